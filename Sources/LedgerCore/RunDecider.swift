public import Foundation

/// The run's decisions as a pure function of its definition, its folded state, an input and the time.
public struct RunDecider: Sendable {
    public let definition: FlowDefinition
    public let registry: ActionRegistry
    static let defaultRetry = RetryPolicy(max_attempts: 3, backoff: .exponential, initial_ms: 200, max_ms: 30_000)
    static let defaultTimeoutSec = 300.0

    public init(definition: FlowDefinition, registry: ActionRegistry = .builtIn) {
        self.definition = definition
        self.registry = registry
    }

    /// The key a service deduplicates an attempt's effect by: `<run>/<target>`, with `/g<n>` once a redrive re-runs
    /// a step whose effect was undone.
    public static func idempotencyKey(runID: String, target: AttemptTarget, generation: Int = 0) -> String {
        generation == 0 ? "\(runID)/\(target.wireID)" : "\(runID)/\(target.wireID)/g\(generation)"
    }

    /// The id of an attempt's command, which its answer carries back: `<run>/<target>/<attempt>`.
    public static func commandID(runID: String, target: AttemptTarget, attempt: Int) -> String {
        "\(runID)/\(target.wireID)/\(attempt)"
    }

    /// Splits a command id back into run, target and attempt.
    public static func parseCommandID(_ id: String) -> (runID: String, target: AttemptTarget, attempt: Int)? {
        let parts = id.split(separator: "/")
        guard parts.count == 3, let attempt = Int(parts[2]) else { return nil }
        return (String(parts[0]), AttemptTarget(wireID: String(parts[1])), attempt)
    }

    /// The template context of a run, built whole: `trigger`, `input`, `steps.<id>.output|status|attempts`, `run`.
    /// Decisions look references up in `RunScope`, which reads only what a reference leads to.
    public static func context(_ state: RunState) -> JSONValue { RunScope(state).value }

    /// Every transition of a run: what `command` does in the run's phase. A command the phase does not allow is
    /// answered with `.refuse`; an answer for an attempt that is no longer running changes nothing (the log keeps
    /// it, the run ignores it).
    public func decide(
        _ state: RunState, _ command: RunCommand, now: Date, random: () -> Double = { Double.random(in: 0..<1) }
    ) -> [RunAction] {
        if case .recordAnswer(let target, let attempt, let result, let source, let service) = command {
            let action: String?
            switch target {
            case .step(let id): action = definition.step(id)?.action
            case .compensation(of: let id): action = definition.step(id)?.compensate?.action
            }
            guard let action, service.answers(action) else { return [] }
            return decide(
                state, .recordResult(target, attempt: attempt, result: result, sourceSequence: source), now: now,
                random: random)
        }
        switch (state.phase, command) {
        case (_, .recordAnswer): return []
        case (.failed, .redrive(let actor, let fromStep, let actorType)):
            if let fromStep, definition.step(fromStep) == nil {
                return [.refuse("flow \(definition.id) has no step \"\(fromStep)\"")]
            }
            if let undoing = state.steps.first(where: { $0.hasLateEffectToUndo && $0.compensation != nil }) {
                return [
                    .refuse(
                        "run \(state.run_id) is still undoing the late effect of step \(undoing.step_id); redrive it once that compensation has ended"
                    )
                ]
            }
            return [.append(.runRedriven(redrive(state, actor: actor, fromStep: fromStep, actorType: actorType)))]
        case (.succeeded, .redrive(let actor, let fromStep, let actorType)):
            return redriveDelivery(state, actor: actor, fromStep: fromStep, actorType: actorType)
        case (.running, .redrive), (.compensating, .redrive), (.cancelling, .redrive), (.cancelled, .redrive):
            return [.refuse("run \(state.run_id) is \(state.status.rawValue); only FAILED runs can be redriven")]

        case (.running, .cancel(let actor, let reason, let actorType)),
            (.compensating, .cancel(let actor, let reason, let actorType)):
            return [
                .append(
                    .runCancelRequested(FlowRunCancelRequested(actor: actor, reason: reason, actor_type: actorType)))
            ]
        case (.cancelling, .cancel):
            return [.refuse("run \(state.run_id) is already being cancelled")]
        case (.succeeded, .cancel), (.failed, .cancel), (.cancelled, .cancel):
            return [
                .refuse(
                    "run \(state.run_id) has already finished (\(state.status.rawValue)); only unfinished runs can be cancelled"
                )
            ]

        // A finished run does nothing more, but for undoing the late effects of abandoned steps and delivering a
        // succeeded run's output to its webhook.
        case (.succeeded, .advance):
            return undoLateEffects(state, now: now, random: random) + deliverOutput(state, now: now, random: random)
        case (.failed, .advance), (.cancelled, .advance):
            return undoLateEffects(state, now: now, random: random)

        case (.succeeded, .recordDelivery(let attempt, let result)):
            return recordDelivery(state, attempt: attempt, result: result, now: now, random: random)
        case (.running, .recordDelivery), (.compensating, .recordDelivery), (.cancelling, .recordDelivery),
            (.failed, .recordDelivery), (.cancelled, .recordDelivery):
            return []

        case (.running, .advance):
            return advance(state, now: now, random: random)
        case (.compensating, .advance), (.cancelling, .advance):
            return compensate(state, now: now, random: random)

        // Steps still running when a run starts compensating may still answer; cancelling abandoned them.
        // A finished run records the late answers of abandoned attempts too (and undoes their effects).
        case (.running, .recordResult(.step(let id), let attempt, let result, let source)),
            (.compensating, .recordResult(.step(let id), let attempt, let result, let source)),
            (.cancelling, .recordResult(.step(let id), let attempt, let result, let source)),
            (.succeeded, .recordResult(.step(let id), let attempt, let result, let source)),
            (.failed, .recordResult(.step(let id), let attempt, let result, let source)),
            (.cancelled, .recordResult(.step(let id), let attempt, let result, let source)):
            guard let step = state.step(id), step.status == .running, let last = step.lastAttempt,
                last.attempt == attempt, last.status == .running
            else { return lateResult(state, step: id, attempt: attempt, result: result, source: source, now: now) }
            switch result {
            case .success(let output):
                return [
                    .append(
                        .stepAttemptSucceeded(
                            StepAttemptSucceeded(
                                step_id: id, attempt: attempt, output: output, started_at: last.started_at,
                                finished_at: Timestamp.format(now), source_sequence: source)))
                ]
            case .failure(let error):
                return failure(
                    id, attempt: attempt, error: error, startedAt: last.started_at, now: now, random: random,
                    sourceSequence: source)
            }
        case (.running, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.compensating, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.cancelling, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.succeeded, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.failed, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.cancelled, .recordResult(.compensation(of: let id), let attempt, let result, let source)):
            guard let compensation = state.step(id)?.compensation, compensation.status == .running,
                let last = compensation.attempts.last, last.attempt == attempt, last.status == .running
            else { return [] }
            switch result {
            case .success(let output):
                return [
                    .append(
                        .compensationSucceeded(
                            StepAttemptSucceeded(
                                step_id: id, attempt: attempt, output: output, started_at: last.started_at,
                                finished_at: Timestamp.format(now), source_sequence: source)))
                ]
            case .failure(let error):
                return compensationFailure(
                    id, attempt: attempt, error: error, startedAt: last.started_at, now: now, random: random,
                    sourceSequence: source)
            }
        }
    }

    func advance(_ state: RunState, now: Date, random: () -> Double) -> [RunAction] {
        var out: [RunAction] = []
        let context = RunScope(state)
        let nowText = Timestamp.format(now)

        // The whole run has a deadline too (`run_timeout_sec`).
        if let limit = definition.run_timeout_sec, limit.isFinite, limit > 0,
            let started = Timestamp.parse(state.started_at ?? state.created_at)
        {
            let deadline = started.addingTimeInterval(limit)
            if deadline <= now {
                let error = RunError(
                    code: "run_timeout",
                    message: "the run did not finish within \(Int(min(limit, Limits.runTimeoutSeconds).rounded()))s")
                return [
                    .append(
                        compensable(state).isEmpty
                            ? .runFailed(FlowRunFailed(error: error))
                            : .runCompensating(FlowRunCompensating(error: error)))
                ]
            }
            out.append(.wakeUp(at: deadline))
        }

        // Steps in flight: time out the late ones, remember the next deadline. (Indices, so that only a running
        // step's record is copied: copying each record and definition retains all they hold, at every decision.)
        for index in state.steps.indices where state.steps[index].status == .running {
            let record = state.steps[index]
            guard let step = definition.step(record.step_id), let last = record.lastAttempt,
                let started = Timestamp.parse(last.started_at)
            else { continue }
            let deadline = started.addingTimeInterval(timeout(step))
            if deadline <= now {
                out += failure(
                    record.step_id, attempt: last.attempt,
                    error: StepError(
                        kind: .timeout, message: "no answer within \(Int(timeout(step).rounded()))s", retryable: true),
                    startedAt: last.started_at, now: now, random: random)
            } else {
                out.append(.wakeUp(at: deadline))
            }
        }
        if out.contains(where: { if case .append = $0 { return true } else { return false } }) { return out }

        // The immediate acknowledgement, before any step starts.
        if let ack = acknowledge(state, context: context) { return ack }

        // A step failed for good: compensate what was done, or fail at once when there is nothing to undo.
        if let failed = state.steps.first(where: { $0.status == .failed }) {
            let error = failed.lastAttempt?.error
            let runError = RunError(
                code: error?.kind.rawValue ?? "step_failed",
                message:
                    "step \(failed.step_id) failed after \(failed.attempts.count) attempt(s): \(error?.message ?? "unknown error")",
                step_id: failed.step_id)
            return [
                .append(
                    compensable(state).isEmpty
                        ? .runFailed(FlowRunFailed(error: runError))
                        : .runCompensating(FlowRunCompensating(error: runError)))
            ]
        }

        for position in definition.steps.indices {
            // The run's records follow the definition's order (`FlowRunStarted` names its steps): look there first,
            // and copy only the definition and the record of a step that may start.
            let id = definition.steps[position].id
            let index =
                position < state.steps.count && state.steps[position].step_id == id
                ? position : state.steps.firstIndex { $0.step_id == id }
            guard let index, state.steps[index].status == .queued else { continue }
            let deps = definition.steps[position].dependencies.compactMap { state.statusOfStep($0) }
            if deps.contains(where: { !$0.isDone }) { continue }
            let step = definition.steps[position]
            let record = state.steps[index]
            if !deps.isEmpty, deps.allSatisfy({ $0 == .skipped }) {
                out.append(
                    .append(.stepSkipped(StepSkipped(step_id: step.id, reason: "every step it depends on was skipped")))
                )
                continue
            }
            if let when = step.when {
                let holds = (try? Condition.parse(when))?.holds(in: context) ?? false
                if !holds {
                    out.append(
                        .append(.stepSkipped(StepSkipped(step_id: step.id, reason: "condition \(when) is false"))))
                    continue
                }
            }
            var attempt = 1
            if let last = record.lastAttempt {
                if let retryAtText = last.retry_at, let retryAt = Timestamp.parse(retryAtText), retryAt > now {
                    out.append(.wakeUp(at: retryAt))
                    continue
                }
                attempt = last.attempt + 1
            }
            out += start(
                step, record: record, attempt: attempt, state: state, context: context, now: now, nowText: nowText)
        }
        if out.contains(where: { if case .append = $0 { return true } else { return false } }) { return out }

        // Every step done: render the output and finish.
        guard state.steps.allSatisfy({ $0.status.isDone }) else { return out }
        let output: JSONValue
        do {
            output = try Template.render(outputSpec.final ?? .null, context: context, at: "output")
        } catch {
            let runError = RunError(code: "output_template", message: "the output template failed: \(error)")
            return [
                .append(
                    compensable(state).isEmpty
                        ? .runFailed(FlowRunFailed(error: runError))
                        : .runCompensating(FlowRunCompensating(error: runError)))
            ]
        }
        var steps: [RunAction] = []
        if state.mode == .live { steps.append(.publishOutput(Self.finalOutput(state, output))) }
        // A dry run performs no side effect: it records its output and delivers nothing.
        let webhook = state.mode == .live ? outputSpec.webhook?.url : nil
        steps.append(.append(.runSucceeded(FlowRunSucceeded(output: output, webhook: webhook))))
        return steps
    }

    /// The compensating phase: one compensation at a time, newest completed step first; then the run ends.
    func compensate(_ state: RunState, now: Date, random: () -> Double) -> [RunAction] {
        if let next = undoNext(compensable(state), state, now: now, random: random) { return next }
        // Nothing left to undo.
        let failedCompensations = state.steps.filter { $0.compensation?.status == .failed }.map(\.step_id)
        if case .cancelling(let actor) = state.phase {
            return [.append(.runCancelled(FlowRunCancelled(actor: actor)))]
        }
        var error = state.error ?? RunError(code: "step_failed", message: "the run failed")
        if !failedCompensations.isEmpty {
            error.message +=
                "; compensation failed for \(failedCompensations.joined(separator: ", ")) (see their attempts)"
        }
        return [.append(.runFailed(FlowRunFailed(error: error)))]
    }

    /// A finished run undoes the late effects of its abandoned steps, one at a time, and stays finished.
    func undoLateEffects(_ state: RunState, now: Date, random: () -> Double) -> [RunAction] {
        undoNext(state.steps.filter(\.hasLateEffectToUndo), state, now: now, random: random) ?? []
    }

    /// The next thing to do to undo `records` in order: wait for a running compensation, retry or start one; nil
    /// when every one of them has ended (undone, or its attempts exhausted).
    func undoNext(_ records: [StepRecord], _ state: RunState, now: Date, random: () -> Double) -> [RunAction]? {
        let context = RunScope(state)
        for record in records {
            guard let step = definition.step(record.step_id), let compensation = step.compensate else { continue }
            let current = record.compensation
            switch current?.status {
            case .running?:
                guard let last = current?.attempts.last, let started = Timestamp.parse(last.started_at) else {
                    return []
                }
                let deadline = started.addingTimeInterval(timeout(step))
                if deadline <= now {
                    return compensationFailure(
                        step.id, attempt: last.attempt,
                        error: StepError(
                            kind: .timeout, message: "no answer within \(Int(timeout(step).rounded()))s",
                            retryable: true),
                        startedAt: last.started_at, now: now, random: random)
                }
                return [.wakeUp(at: deadline)]
            case .failed?:
                continue  // attempts exhausted: recorded in the run and its dead letter
            default:
                if let retryAtText = current?.attempts.last?.retry_at, let retryAt = Timestamp.parse(retryAtText),
                    retryAt > now
                {
                    return [.wakeUp(at: retryAt)]
                }
                let attempt = (current?.attempts.last?.attempt ?? 0) + 1
                let nowText = Timestamp.format(now)
                let target = AttemptTarget.compensation(of: step.id)
                let request: JSONValue
                do {
                    request = try Template.render(
                        compensation.with ?? .object([:]), context: context, at: "steps.\(step.id).compensate.with")
                } catch {
                    return [
                        .append(
                            .compensationFailed(
                                StepAttemptFailed(
                                    step_id: step.id, attempt: attempt,
                                    error: StepError(kind: .template, message: "\(error)", retryable: false),
                                    started_at: nowText, finished_at: nowText, retry_at: nil)))
                    ]
                }
                let key = Self.idempotencyKey(runID: state.run_id, target: target, generation: record.generation)
                let commandID = Self.commandID(runID: state.run_id, target: target, attempt: attempt)
                let started = StepAttemptStarted(
                    step_id: step.id, attempt: attempt, idempotency_key: key, command_id: commandID,
                    started_at: nowText, request: request)
                if state.mode == .dry || registry[compensation.action]?.kind == .local {
                    let output: JSONValue =
                        state.mode == .dry
                        ? [
                            "simulated": true, "action": .string(compensation.action),
                            "request": OutboundTargets.redactingHeaders(request),
                        ] : request["value"] ?? .null
                    return [
                        .append(.compensationStarted(started)),
                        .append(
                            .compensationSucceeded(
                                StepAttemptSucceeded(
                                    step_id: step.id, attempt: attempt, output: output, started_at: nowText,
                                    finished_at: nowText))),
                    ]
                }
                return [
                    .append(.compensationStarted(started)),
                    .execute(
                        StepExecution(
                            runID: state.run_id, target: target, attempt: attempt, action: compensation.action,
                            request: request,
                            idempotencyKey: key, commandID: commandID, deadline: now.addingTimeInterval(timeout(step)),
                            onBehalfOf: onBehalfOf(state),
                            secretHeaders: SecretReferences.headerNames(in: compensation.with))),
                    .wakeUp(at: now.addingTimeInterval(timeout(step))),
                ]
            }
        }
        return nil
    }

}
