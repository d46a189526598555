public import Foundation

/// What the engine asks of a run: the decider's input.
public enum RunCommand: Sendable, Equatable {
    /// Look at the run and do whatever is due: start ready steps, fire due retries, time out late steps, compensate,
    /// finish.
    case advance
    /// Another service (or the engine itself) answered an attempt of a step or of a step's compensation.
    case recordResult(AttemptTarget, attempt: Int, result: StepResult, sourceSequence: UInt64?)
    /// Cancel the run: running steps are abandoned, queued ones skipped, completed ones compensated.
    case cancel(actor: String, reason: String?)
    /// Re-run a failed run from `fromStep` (default: the failed step), keeping the results of the steps before it.
    case redrive(actor: String, fromStep: String?)
}

/// What an attempt is for: a step of the flow, or the compensation (undo) of a step.
public enum AttemptTarget: Sendable, Hashable, CustomStringConvertible {
    case step(String)
    case compensation(of: String)

    /// The step of the flow the attempt belongs to.
    public var stepID: String {
        switch self {
        case .step(let id), .compensation(of: let id): return id
        }
    }

    /// How the target is written in command ids, idempotency keys and a command's `stepid` (the wire format):
    /// the step id, or `<step id>~compensate`.
    public var wireID: String {
        switch self {
        case .step(let id): return id
        case .compensation(of: let id): return id + Self.compensationSuffix
        }
    }

    /// The target written as `wireID`.
    public init(wireID: String) {
        if wireID.hasSuffix(Self.compensationSuffix) {
            self = .compensation(of: String(wireID.dropLast(Self.compensationSuffix.count)))
        } else {
            self = .step(wireID)
        }
    }

    static let compensationSuffix = "~compensate"

    public var description: String {
        switch self {
        case .step(let id): return "step \(id)"
        case .compensation(of: let id): return "the compensation of step \(id)"
        }
    }
}

/// The outcome of one attempt: the step's output, or why it failed.
public enum StepResult: Sendable, Equatable {
    case success(JSONValue)
    case failure(StepError)
}

/// A step attempt for the engine to carry out.
public struct StepExecution: Sendable, Equatable {
    public var runID: String
    public var target: AttemptTarget
    public var attempt: Int
    public var action: String
    /// The rendered `with`.
    public var request: JSONValue
    public var idempotencyKey: String
    public var commandID: String
    public var deadline: Date
    public var onBehalfOf: JSONValue

    public init(
        runID: String, target: AttemptTarget, attempt: Int, action: String, request: JSONValue, idempotencyKey: String,
        commandID: String, deadline: Date, onBehalfOf: JSONValue
    ) {
        self.runID = runID
        self.target = target
        self.attempt = attempt
        self.action = action
        self.request = request
        self.idempotencyKey = idempotencyKey
        self.commandID = commandID
        self.deadline = deadline
        self.onBehalfOf = onBehalfOf
    }
}

/// What the decider returns, in the order the engine must carry it out.
public enum RunAction: Sendable, Equatable {
    /// Append this event to the run's subject (with the run's expected last sequence), then fold it.
    case append(LedgerEvent.Body)
    /// Carry out a step attempt (its `StepAttemptStarted` was appended just before).
    case execute(StepExecution)
    /// Publish the run's output for the assistant (before the run's final event, so a crash repeats it rather than
    /// losing it).
    case publishOutput(FlowOutputProduced)
    /// Come back with `.advance` at this time (a retry's backoff or a step's deadline).
    case wakeUp(at: Date)
    /// The command cannot be carried out in the run's phase: tell whoever asked, and change nothing.
    case refuse(String)
}

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

    /// The template context of a run: `trigger`, `input`, `steps.<id>.output|status`, `run`.
    public static func context(_ state: RunState) -> JSONValue {
        var steps: [String: JSONValue] = [:]
        for step in state.steps {
            steps[step.step_id] = .object([
                "output": step.output ?? .null, "status": .string(step.status.rawValue),
                "attempts": .number(Double(step.attempts.count)),
            ])
        }
        return .object([
            "trigger": state.trigger.data ?? .null,
            "input": state.input,
            "steps": .object(steps),
            "run": .object([
                "id": .string(state.run_id), "flow_id": .string(state.flow_id),
                "flow_version": .number(Double(state.flow_version)), "mode": .string(state.mode.rawValue),
                "actor": .string(state.actor), "started_at": .string(state.started_at ?? state.created_at),
            ]),
        ])
    }

    /// Every transition of a run: what `command` does in the run's phase. A command the phase does not allow is
    /// answered with `.refuse`; an answer for an attempt that is no longer running changes nothing (the log keeps
    /// it, the run ignores it).
    public func decide(
        _ state: RunState, _ command: RunCommand, now: Date, random: () -> Double = { Double.random(in: 0..<1) }
    ) -> [RunAction] {
        switch (state.phase, command) {
        case (.failed, .redrive(let actor, let fromStep)):
            if let fromStep, definition.step(fromStep) == nil {
                return [.refuse("flow \(definition.id) has no step \"\(fromStep)\"")]
            }
            return [.append(.runRedriven(redrive(state, actor: actor, fromStep: fromStep)))]
        case (.running, .redrive), (.compensating, .redrive), (.cancelling, .redrive), (.succeeded, .redrive),
            (.cancelled, .redrive):
            return [.refuse("run \(state.run_id) is \(state.status.rawValue); only FAILED runs can be redriven")]

        case (.running, .cancel(let actor, let reason)), (.compensating, .cancel(let actor, let reason)):
            return [.append(.runCancelRequested(FlowRunCancelRequested(actor: actor, reason: reason)))]
        case (.cancelling, .cancel):
            return [.refuse("run \(state.run_id) is already being cancelled")]
        case (.succeeded, .cancel), (.failed, .cancel), (.cancelled, .cancel):
            return [.refuse(
                "run \(state.run_id) has already finished (\(state.status.rawValue)); only unfinished runs can be cancelled")]

        case (.succeeded, .advance), (.failed, .advance), (.cancelled, .advance),
            (.succeeded, .recordResult), (.failed, .recordResult), (.cancelled, .recordResult):
            return []  // a finished run does nothing more; a late answer stays in the log

        case (.running, .advance):
            return advance(state, now: now, random: random)
        case (.compensating, .advance), (.cancelling, .advance):
            return compensate(state, now: now, random: random)

        // Steps still running when a run starts compensating may still answer; cancelling abandoned them.
        case (.running, .recordResult(.step(let id), let attempt, let result, let source)),
            (.compensating, .recordResult(.step(let id), let attempt, let result, let source)),
            (.cancelling, .recordResult(.step(let id), let attempt, let result, let source)):
            guard let step = state.step(id), step.status == .running, let last = step.lastAttempt,
                last.attempt == attempt, last.status == .running
            else { return [] }
            switch result {
            case .success(let output):
                return [.append(.stepAttemptSucceeded(StepAttemptSucceeded(
                    step_id: id, attempt: attempt, output: output, started_at: last.started_at,
                    finished_at: Timestamp.format(now), source_sequence: source)))]
            case .failure(let error):
                return failure(id, attempt: attempt, error: error, startedAt: last.started_at, now: now, random: random, sourceSequence: source)
            }
        case (.running, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.compensating, .recordResult(.compensation(of: let id), let attempt, let result, let source)),
            (.cancelling, .recordResult(.compensation(of: let id), let attempt, let result, let source)):
            guard let compensation = state.step(id)?.compensation, compensation.status == .running,
                let last = compensation.attempts.last, last.attempt == attempt, last.status == .running
            else { return [] }
            switch result {
            case .success(let output):
                return [.append(.compensationSucceeded(StepAttemptSucceeded(
                    step_id: id, attempt: attempt, output: output, started_at: last.started_at,
                    finished_at: Timestamp.format(now), source_sequence: source)))]
            case .failure(let error):
                return compensationFailure(id, attempt: attempt, error: error, startedAt: last.started_at, now: now, random: random, sourceSequence: source)
            }
        }
    }

    func retryPolicy(_ step: StepDefinition) -> RetryPolicy {
        step.retry ?? definition.defaults?.retry ?? Self.defaultRetry
    }

    /// The step's timeout, within (0, `Limits.stepTimeoutSeconds`] whatever the stored definition says.
    func timeout(_ step: StepDefinition) -> Double {
        let seconds = step.timeout_sec ?? definition.defaults?.timeout_sec ?? Self.defaultTimeoutSec
        guard seconds.isFinite, seconds > 0 else { return Self.defaultTimeoutSec }
        return min(seconds, Limits.stepTimeoutSeconds)
    }

    func retryAt(_ policy: RetryPolicy, error: StepError, attempt: Int, now: Date, random: () -> Double) -> Date? {
        guard error.retryable, !(policy.non_retryable ?? []).contains(error.kind), attempt < (policy.max_attempts ?? 3) else { return nil }
        return now.addingTimeInterval(Double(policy.delayMillis(after: attempt, random: random())) / 1000)
    }

    func failure(
        _ stepID: String, attempt: Int, error: StepError, startedAt: String, now: Date, random: () -> Double, sourceSequence: UInt64? = nil
    ) -> [RunAction] {
        guard let step = definition.step(stepID) else { return [] }
        let retryAt = retryAt(retryPolicy(step), error: error, attempt: attempt, now: now, random: random)
        var steps: [RunAction] = [.append(.stepAttemptFailed(StepAttemptFailed(
            step_id: stepID, attempt: attempt, error: error, started_at: startedAt, finished_at: Timestamp.format(now),
            retry_at: retryAt.map(Timestamp.format), source_sequence: sourceSequence)))]
        if let retryAt { steps.append(.wakeUp(at: retryAt)) }
        return steps
    }

    func compensationFailure(
        _ stepID: String, attempt: Int, error: StepError, startedAt: String, now: Date, random: () -> Double, sourceSequence: UInt64? = nil
    ) -> [RunAction] {
        guard let step = definition.step(stepID) else { return [] }
        // Compensations are retried with the step's policy, and at least five times: they undo effects.
        var policy = retryPolicy(step)
        policy.max_attempts = max(policy.max_attempts ?? 3, 5)
        let retryAt = retryAt(policy, error: StepError(kind: error.kind, message: error.message, retryable: true), attempt: attempt, now: now, random: random)
        var steps: [RunAction] = [.append(.compensationFailed(StepAttemptFailed(
            step_id: stepID, attempt: attempt, error: error, started_at: startedAt, finished_at: Timestamp.format(now),
            retry_at: retryAt.map(Timestamp.format), source_sequence: sourceSequence)))]
        if let retryAt { steps.append(.wakeUp(at: retryAt)) }
        return steps
    }

    /// Steps that can be compensated, newest completion first.
    func compensable(_ state: RunState) -> [StepRecord] {
        state.completion_order.reversed().compactMap { id in
            guard let record = state.step(id), record.status == .succeeded, definition.step(id)?.compensate != nil else { return nil }
            return record
        }
    }

    func advance(_ state: RunState, now: Date, random: () -> Double) -> [RunAction] {
        var out: [RunAction] = []
        let context = Self.context(state)
        let nowText = Timestamp.format(now)

        // The whole run has a deadline too (`run_timeout_sec`).
        if let limit = definition.run_timeout_sec, limit.isFinite, limit > 0, let started = Timestamp.parse(state.started_at ?? state.created_at) {
            let deadline = started.addingTimeInterval(limit)
            if deadline <= now {
                let error = RunError(code: "run_timeout", message: "the run did not finish within \(Int(min(limit, Limits.runTimeoutSeconds).rounded()))s")
                return [.append(compensable(state).isEmpty ? .runFailed(FlowRunFailed(error: error)) : .runCompensating(FlowRunCompensating(error: error)))]
            }
            out.append(.wakeUp(at: deadline))
        }

        // Steps in flight: time out the late ones, remember the next deadline.
        for record in state.steps where record.status == .running {
            guard let step = definition.step(record.step_id), let last = record.lastAttempt,
                let started = Timestamp.parse(last.started_at)
            else { continue }
            let deadline = started.addingTimeInterval(timeout(step))
            if deadline <= now {
                out += failure(
                    record.step_id, attempt: last.attempt,
                    error: StepError(kind: .timeout, message: "no answer within \(Int(timeout(step).rounded()))s", retryable: true),
                    startedAt: last.started_at, now: now, random: random)
            } else {
                out.append(.wakeUp(at: deadline))
            }
        }
        if out.contains(where: { if case .append = $0 { return true } else { return false } }) { return out }

        // A step failed for good: compensate what was done, or fail at once when there is nothing to undo.
        if let failed = state.steps.first(where: { $0.status == .failed }) {
            let error = failed.lastAttempt?.error
            let runError = RunError(
                code: error?.kind.rawValue ?? "step_failed",
                message: "step \(failed.step_id) failed after \(failed.attempts.count) attempt(s): \(error?.message ?? "unknown error")",
                step_id: failed.step_id)
            return [.append(compensable(state).isEmpty ? .runFailed(FlowRunFailed(error: runError)) : .runCompensating(FlowRunCompensating(error: runError)))]
        }

        for step in definition.steps {
            guard let record = state.step(step.id), record.status == .queued else { continue }
            let deps = step.dependencies.compactMap { state.step($0) }
            if deps.contains(where: { !$0.status.isDone }) { continue }
            if !deps.isEmpty, deps.allSatisfy({ $0.status == .skipped }) {
                out.append(.append(.stepSkipped(StepSkipped(step_id: step.id, reason: "every step it depends on was skipped"))))
                continue
            }
            if let when = step.when {
                let holds = (try? Condition.parse(when))?.holds(in: context) ?? false
                if !holds {
                    out.append(.append(.stepSkipped(StepSkipped(step_id: step.id, reason: "condition \(when) is false"))))
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
            out += start(step, record: record, attempt: attempt, state: state, context: context, now: now, nowText: nowText)
        }
        if out.contains(where: { if case .append = $0 { return true } else { return false } }) { return out }

        // Every step done: render the output and finish.
        guard state.steps.allSatisfy({ $0.status.isDone }) else { return out }
        let output: JSONValue
        do {
            output = try Template.render(definition.output ?? .null, context: context, at: "output")
        } catch {
            let runError = RunError(code: "output_template", message: "the output template failed: \(error)")
            return [.append(compensable(state).isEmpty ? .runFailed(FlowRunFailed(error: runError)) : .runCompensating(FlowRunCompensating(error: runError)))]
        }
        var steps: [RunAction] = []
        if state.mode == .live {
            steps.append(.publishOutput(FlowOutputProduced(
                run_id: state.run_id, flow_id: state.flow_id, flow_version: state.flow_version, message_id: state.message_id,
                channel: state.channel, text: output["text"]?.stringValue, data: output["data"] ?? output)))
        }
        steps.append(.append(.runSucceeded(FlowRunSucceeded(output: output))))
        return steps
    }

    /// The compensating phase: one compensation at a time, newest completed step first; then the run ends.
    func compensate(_ state: RunState, now: Date, random: () -> Double) -> [RunAction] {
        let context = Self.context(state)
        for record in compensable(state) {
            guard let step = definition.step(record.step_id), let compensation = step.compensate else { continue }
            let current = record.compensation
            switch current?.status {
            case .running?:
                guard let last = current?.attempts.last, let started = Timestamp.parse(last.started_at) else { return [] }
                let deadline = started.addingTimeInterval(timeout(step))
                if deadline <= now {
                    return compensationFailure(
                        step.id, attempt: last.attempt, error: StepError(kind: .timeout, message: "no answer within \(Int(timeout(step).rounded()))s", retryable: true),
                        startedAt: last.started_at, now: now, random: random)
                }
                return [.wakeUp(at: deadline)]
            case .failed?:
                continue  // attempts exhausted: recorded in the run and its dead letter
            default:
                if let retryAtText = current?.attempts.last?.retry_at, let retryAt = Timestamp.parse(retryAtText), retryAt > now {
                    return [.wakeUp(at: retryAt)]
                }
                let attempt = (current?.attempts.last?.attempt ?? 0) + 1
                let nowText = Timestamp.format(now)
                let target = AttemptTarget.compensation(of: step.id)
                let request: JSONValue
                do {
                    request = try Template.render(compensation.with ?? .object([:]), context: context, at: "steps.\(step.id).compensate.with")
                } catch {
                    return [.append(.compensationFailed(StepAttemptFailed(
                        step_id: step.id, attempt: attempt, error: StepError(kind: .template, message: "\(error)", retryable: false),
                        started_at: nowText, finished_at: nowText, retry_at: nil)))]
                }
                let key = Self.idempotencyKey(runID: state.run_id, target: target, generation: record.generation)
                let commandID = Self.commandID(runID: state.run_id, target: target, attempt: attempt)
                let started = StepAttemptStarted(step_id: step.id, attempt: attempt, idempotency_key: key, command_id: commandID, started_at: nowText, request: request)
                if state.mode == .dry || registry[compensation.action]?.kind == .local {
                    let output: JSONValue = state.mode == .dry ? ["simulated": true, "action": .string(compensation.action), "request": OutboundTargets.redactingHeaders(request)] : request["value"] ?? .null
                    return [.append(.compensationStarted(started)), .append(.compensationSucceeded(StepAttemptSucceeded(
                        step_id: step.id, attempt: attempt, output: output, started_at: nowText, finished_at: nowText)))]
                }
                return [
                    .append(.compensationStarted(started)),
                    .execute(StepExecution(
                        runID: state.run_id, target: target, attempt: attempt, action: compensation.action, request: request,
                        idempotencyKey: key, commandID: commandID, deadline: now.addingTimeInterval(timeout(step)), onBehalfOf: onBehalfOf(state))),
                    .wakeUp(at: now.addingTimeInterval(timeout(step))),
                ]
            }
        }
        // Nothing left to undo.
        let failedCompensations = state.steps.filter { $0.compensation?.status == .failed }.map(\.step_id)
        if case .cancelling(let actor) = state.phase {
            return [.append(.runCancelled(FlowRunCancelled(actor: actor)))]
        }
        var error = state.error ?? RunError(code: "step_failed", message: "the run failed")
        if !failedCompensations.isEmpty {
            error.message += "; compensation failed for \(failedCompensations.joined(separator: ", ")) (see their attempts)"
        }
        return [.append(.runFailed(FlowRunFailed(error: error)))]
    }

    /// Which steps a redrive runs again: the chosen step, everything downstream of it, everything that did not
    /// finish, and every step whose effect was compensated (undone).
    func redrive(_ state: RunState, actor: String, fromStep: String?) -> FlowRunRedriven {
        let from = fromStep ?? state.error?.step_id ?? state.steps.first { $0.status == .failed }?.step_id ?? definition.steps[0].id
        var reset: Set<String> = [from]
        var changed = true
        while changed {
            changed = false
            for step in definition.steps where !reset.contains(step.id) && step.dependencies.contains(where: reset.contains) {
                reset.insert(step.id)
                changed = true
            }
        }
        for record in state.steps where record.status != .succeeded && record.status != .skipped { reset.insert(record.step_id) }
        for record in state.steps where record.status == .compensated { reset.insert(record.step_id) }
        return FlowRunRedriven(actor: actor, from_step: from, reset_steps: definition.steps.map(\.id).filter(reset.contains))
    }

    /// The attempts in flight (after a restart): each rebuilt with the same command id and idempotency key, so that
    /// carrying it out again is deduplicated by the service that receives it.
    public func inFlight(_ state: RunState) -> [(execution: StepExecution, startedAt: Date)] {
        guard !state.status.isTerminal else { return [] }
        let context = Self.context(state)
        var out: [(StepExecution, Date)] = []
        for record in state.steps {
            guard let step = definition.step(record.step_id) else { continue }
            var action = step.action
            var template = step.with
            var target = AttemptTarget.step(step.id)
            var last = record.lastAttempt
            if record.status == .running {
            } else if record.compensation?.status == .running, let compensation = step.compensate {
                action = compensation.action
                template = compensation.with
                target = .compensation(of: step.id)
                last = record.compensation?.attempts.last
            } else {
                continue
            }
            guard let last, let started = Timestamp.parse(last.started_at),
                let request = try? Template.render(template ?? .object([:]), context: context)
            else { continue }
            out.append((StepExecution(
                runID: state.run_id, target: target, attempt: last.attempt, action: action, request: request,
                idempotencyKey: Self.idempotencyKey(runID: state.run_id, target: target, generation: record.generation),
                commandID: Self.commandID(runID: state.run_id, target: target, attempt: last.attempt),
                deadline: started.addingTimeInterval(timeout(step)), onBehalfOf: onBehalfOf(state)), started))
        }
        return out
    }

    func onBehalfOf(_ state: RunState) -> JSONValue {
        definition.run_as == .service
            ? .object(["service": "ledgerflow"])
            : .object(["user_id": state.trigger.data?[path: "user.id"] ?? .string(state.actor)])
    }

    func start(_ step: StepDefinition, record: StepRecord, attempt: Int, state: RunState, context: JSONValue, now: Date, nowText: String) -> [RunAction] {
        let request: JSONValue
        do {
            request = try Template.render(step.with ?? .object([:]), context: context, at: "steps.\(step.id).with")
        } catch {
            return failure(step.id, attempt: attempt, error: StepError(kind: .template, message: "\(error)", retryable: false),
                startedAt: nowText, now: now, random: { 0 })
        }
        let spec = registry[step.action]
        // Local actions run inside the decision: one event records the whole attempt.
        if spec?.kind == .local {
            return [.append(.stepAttemptSucceeded(StepAttemptSucceeded(
                step_id: step.id, attempt: attempt, output: request["value"] ?? .null, started_at: nowText, finished_at: nowText)))]
        }
        // A dry run calls nothing outside the engine: every other action answers with a simulated result.
        if state.mode == .dry {
            // The simulated answer echoes the request, so templates reading it render; it says it is simulated.
            // Header values (credentials) are not recorded: the output is kept in the log and the read models.
            var fields = OutboundTargets.redactingHeaders(request).objectValue ?? [:]
            fields["simulated"] = true
            fields["action"] = .string(step.action)
            let simulated: JSONValue = .object(fields)
            return [.append(.stepAttemptSucceeded(StepAttemptSucceeded(
                step_id: step.id, attempt: attempt, output: simulated, started_at: nowText, finished_at: nowText)))]
        }
        let key = Self.idempotencyKey(runID: state.run_id, target: .step(step.id), generation: record.generation)
        let commandID = Self.commandID(runID: state.run_id, target: .step(step.id), attempt: attempt)
        let timeout = timeout(step)
        let onBehalfOf = onBehalfOf(state)
        return [
            .append(.stepAttemptStarted(StepAttemptStarted(
                step_id: step.id, attempt: attempt, idempotency_key: key, command_id: commandID, started_at: nowText, request: request))),
            .execute(StepExecution(
                runID: state.run_id, target: .step(step.id), attempt: attempt, action: step.action, request: request, idempotencyKey: key,
                commandID: commandID, deadline: now.addingTimeInterval(timeout), onBehalfOf: onBehalfOf)),
            .wakeUp(at: now.addingTimeInterval(timeout)),
        ]
    }
}
