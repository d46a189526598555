public import Foundation

/// How the decider starts, times, retries and fails attempts, and what a redrive runs again.
extension RunDecider {
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
        guard error.retryable, !(policy.non_retryable ?? []).contains(error.kind), attempt < (policy.max_attempts ?? 3)
        else { return nil }
        return now.addingTimeInterval(Double(policy.delayMillis(after: attempt, random: random())) / 1000)
    }

    func failure(
        _ stepID: String, attempt: Int, error: StepError, startedAt: String, now: Date, random: () -> Double,
        sourceSequence: UInt64? = nil
    ) -> [RunAction] {
        guard let step = definition.step(stepID) else { return [] }
        let failed = StepAttemptFailed(
            step_id: stepID, attempt: attempt, error: error, started_at: startedAt, finished_at: Timestamp.format(now),
            retry_at: nil, source_sequence: sourceSequence)
        return record(
            failed, as: LedgerEvent.Body.stepAttemptFailed, policy: retryPolicy(step), retrying: error, now: now,
            random: random)
    }

    func compensationFailure(
        _ stepID: String, attempt: Int, error: StepError, startedAt: String, now: Date, random: () -> Double,
        sourceSequence: UInt64? = nil
    ) -> [RunAction] {
        guard let step = definition.step(stepID) else { return [] }
        // Compensations are retried with the step's policy, and at least five times: they undo effects.
        var policy = retryPolicy(step)
        policy.max_attempts = max(policy.max_attempts ?? 3, 5)
        let failed = StepAttemptFailed(
            step_id: stepID, attempt: attempt, error: error, started_at: startedAt, finished_at: Timestamp.format(now),
            retry_at: nil, source_sequence: sourceSequence)
        let retrying = StepError(kind: error.kind, message: error.message, retryable: true)
        return record(
            failed, as: LedgerEvent.Body.compensationFailed, policy: policy, retrying: retrying, now: now,
            random: random)
    }

    /// The failed attempt's event, with its retry time when `policy` retries `error`, and the wake-up for it.
    private func record(
        _ failed: StepAttemptFailed, as event: (StepAttemptFailed) -> LedgerEvent.Body, policy: RetryPolicy,
        retrying error: StepError, now: Date, random: () -> Double
    ) -> [RunAction] {
        var failed = failed
        let retryAt = retryAt(policy, error: error, attempt: failed.attempt, now: now, random: random)
        failed.retry_at = retryAt.map(Timestamp.format)
        var actions: [RunAction] = [.append(event(failed))]
        if let retryAt { actions.append(.wakeUp(at: retryAt)) }
        return actions
    }

    /// Steps that can be compensated: the late effects of abandoned steps first (the newest effects), then the
    /// completed steps, newest completion first.
    func compensable(_ state: RunState) -> [StepRecord] {
        state.steps.filter(\.hasLateEffectToUndo)
            + state.completion_order.reversed().compactMap { id in
                guard let record = state.step(id), record.status == .succeeded, definition.step(id)?.compensate != nil
                else { return nil }
                return record
            }
    }

    /// The answer to an attempt that is no longer running. A success for an attempt the run abandoned (cancelled,
    /// or timed out) means its effect happened after all: it is recorded once (and undone later when the step did
    /// not succeed and has a compensation). Anything else changes nothing; the log keeps the answer.
    func lateResult(
        _ state: RunState, step id: String, attempt: Int, result: StepResult, source: UInt64?, now: Date
    ) -> [RunAction] {
        // A service's answer to a step that succeeded when its request was stored (`notify`): recorded once, on
        // the step, whatever the run has done since.
        if source != nil, let step = state.step(id), step.status == .succeeded,
            let action = definition.step(id)?.action, Self.answeredLater.contains(action),
            step.attempts.contains(where: { $0.attempt == attempt && $0.status == .succeeded }),
            !(step.late_results ?? []).contains(where: { $0.attempt == attempt })
        {
            guard case .success(let output) = result else { return [] }
            return [
                .append(
                    .stepLateResultRecorded(
                        StepLateResultRecorded(
                            step_id: id, attempt: attempt, output: output, received_at: Timestamp.format(now),
                            source_sequence: source, compensable: false)))
            ]
        }
        guard case .success(let output) = result, let step = state.step(id),
            let abandoned = step.attempts.last(where: { $0.attempt == attempt }), abandoned.status == .failed,
            abandoned.error?.kind == .cancelled || abandoned.error?.kind == .timeout,
            !(step.late_results ?? []).contains(where: { $0.attempt == attempt })
        else { return [] }
        return [
            .append(
                .stepLateResultRecorded(
                    StepLateResultRecorded(
                        step_id: id, attempt: attempt, output: output, received_at: Timestamp.format(now),
                        source_sequence: source, compensable: definition.step(id)?.compensate != nil)))
        ]
    }

    /// Actions whose step succeeds once its request is stored, and whose service may answer later: the answer is
    /// recorded on the step (`StepLateResultRecorded`) and changes nothing else.
    static let answeredLater: Set<String> = ["notify"]

    /// Which steps a redrive runs again: the chosen step, everything downstream of it, everything that did not
    /// finish, and every step whose effect was compensated (undone).
    func redrive(_ state: RunState, actor: String, fromStep: String?, actorType: String? = nil) -> FlowRunRedriven {
        let from =
            fromStep ?? state.error?.step_id ?? state.steps.first { $0.status == .failed }?.step_id
            ?? definition.steps[0].id
        var reset: Set<String> = [from]
        var changed = true
        while changed {
            changed = false
            for step in definition.steps
            where !reset.contains(step.id) && step.dependencies.contains(where: reset.contains) {
                reset.insert(step.id)
                changed = true
            }
        }
        for record in state.steps where record.status != .succeeded && record.status != .skipped {
            reset.insert(record.step_id)
        }
        for record in state.steps where record.status == .compensated { reset.insert(record.step_id) }
        return FlowRunRedriven(
            actor: actor, from_step: from, reset_steps: definition.steps.map(\.id).filter(reset.contains),
            actor_type: actorType)
    }

    /// The attempts in flight (after a restart): each rebuilt with the same command id and idempotency key, so that
    /// carrying it out again is deduplicated by the service that receives it.
    public func inFlight(_ state: RunState) -> [(execution: StepExecution, startedAt: Date)] {
        guard !state.isSettled else { return [] }
        let context = RunScope(state)
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
            out.append(
                (
                    StepExecution(
                        runID: state.run_id, target: target, attempt: last.attempt, action: action, request: request,
                        idempotencyKey: Self.idempotencyKey(
                            runID: state.run_id, target: target, generation: record.generation),
                        commandID: Self.commandID(runID: state.run_id, target: target, attempt: last.attempt),
                        deadline: started.addingTimeInterval(timeout(step)), onBehalfOf: onBehalfOf(state),
                        secretHeaders: SecretReferences.headerNames(in: template)), started
                ))
        }
        return out
    }

    /// Whose behalf the run's side effects act on: the service for a `run_as: service` flow; else the user named
    /// for the run (`on_behalf_of`) or its trigger's user; a run with neither (a manual run of a flow that declares
    /// no `run_as`) acts as the service, never as the operator who started it.
    func onBehalfOf(_ state: RunState) -> JSONValue {
        let service: JSONValue = .object(["service": "ledgerflow"])
        guard definition.run_as != .service else { return service }
        if let user = state.on_behalf_of ?? state.trigger.data?[path: "user.id"]?.stringValue {
            return .object(["user_id": .string(user)])
        }
        return service
    }

    func start(
        _ step: StepDefinition, record: StepRecord, attempt: Int, state: RunState, context: RunScope, now: Date,
        nowText: String
    ) -> [RunAction] {
        let request: JSONValue
        do {
            request = try Template.render(step.with ?? .object([:]), context: context, at: "steps.\(step.id).with")
        } catch {
            return failure(
                step.id, attempt: attempt, error: StepError(kind: .template, message: "\(error)", retryable: false),
                startedAt: nowText, now: now, random: { 0 })
        }
        let spec = registry[step.action]
        // Local actions run inside the decision: one event records the whole attempt.
        if spec?.kind == .local {
            return [
                .append(
                    .stepAttemptSucceeded(
                        StepAttemptSucceeded(
                            step_id: step.id, attempt: attempt, output: request["value"] ?? .null, started_at: nowText,
                            finished_at: nowText)))
            ]
        }
        // A dry run calls nothing outside the engine: every other action answers with a simulated result.
        if state.mode == .dry {
            // The simulated answer echoes the request, so templates reading it render; it says it is simulated.
            // Header values (credentials) are not recorded: the output is kept in the log and the read models.
            var fields = OutboundTargets.redactingHeaders(request).objectValue ?? [:]
            fields["simulated"] = true
            fields["action"] = .string(step.action)
            let simulated: JSONValue = .object(fields)
            return [
                .append(
                    .stepAttemptSucceeded(
                        StepAttemptSucceeded(
                            step_id: step.id, attempt: attempt, output: simulated, started_at: nowText,
                            finished_at: nowText)))
            ]
        }
        let key = Self.idempotencyKey(runID: state.run_id, target: .step(step.id), generation: record.generation)
        let commandID = Self.commandID(runID: state.run_id, target: .step(step.id), attempt: attempt)
        let timeout = timeout(step)
        let onBehalfOf = onBehalfOf(state)
        return [
            .append(
                .stepAttemptStarted(
                    StepAttemptStarted(
                        step_id: step.id, attempt: attempt, idempotency_key: key, command_id: commandID,
                        started_at: nowText, request: request))),
            .execute(
                StepExecution(
                    runID: state.run_id, target: .step(step.id), attempt: attempt, action: step.action,
                    request: request, idempotencyKey: key,
                    commandID: commandID, deadline: now.addingTimeInterval(timeout), onBehalfOf: onBehalfOf,
                    secretHeaders: SecretReferences.headerNames(in: step.with))),
            .wakeUp(at: now.addingTimeInterval(timeout)),
        ]
    }
}
