public import Foundation

/// What the engine hands the decider.
public enum RunInput: Sendable, Equatable {
    /// Look at the run and do whatever is due: start ready steps, fire due retries, time out late steps, finish.
    case advance
    /// Another service (or the engine itself) answered a step attempt.
    case stepResult(stepID: String, attempt: Int, result: StepResult, sourceSequence: UInt64?)
}

public enum StepResult: Sendable, Equatable {
    case success(JSONValue)
    case failure(StepError)
}

/// A step attempt for the engine to carry out.
public struct StepExecution: Sendable, Equatable {
    public var runID: String
    public var stepID: String
    public var attempt: Int
    public var action: String
    /// The rendered `with`.
    public var request: JSONValue
    public var idempotencyKey: String
    public var commandID: String
    public var deadline: Date
    public var onBehalfOf: JSONValue
}

/// What the decider returns, in the order the engine must carry it out.
public enum RunStep: Sendable, Equatable {
    /// Append this event to the run's subject (with the run's expected last sequence), then fold it.
    case append(LedgerEvent.Body)
    /// Carry out a step attempt (its `StepAttemptStarted` was appended just before).
    case execute(StepExecution)
    /// Publish the run's output for the assistant (before the run's final event, so a crash repeats it rather than
    /// losing it).
    case publishOutput(FlowOutputProduced)
    /// Come back with `.advance` at this time (a retry's backoff or a step's deadline).
    case wakeUp(at: Date)
}

extension LedgerEvent.Body: Equatable {
    public static func == (lhs: LedgerEvent.Body, rhs: LedgerEvent.Body) -> Bool {
        switch (lhs, rhs) {
        case (.flowVersionRecorded(let a), .flowVersionRecorded(let b)): return a == b
        case (.flowStatusChanged(let a), .flowStatusChanged(let b)): return a == b
        case (.runStarted(let a), .runStarted(let b)): return a == b
        case (.stepAttemptStarted(let a), .stepAttemptStarted(let b)): return a == b
        case (.stepAttemptSucceeded(let a), .stepAttemptSucceeded(let b)): return a == b
        case (.stepAttemptFailed(let a), .stepAttemptFailed(let b)): return a == b
        case (.stepSkipped(let a), .stepSkipped(let b)): return a == b
        case (.runSucceeded(let a), .runSucceeded(let b)): return a == b
        case (.runFailed(let a), .runFailed(let b)): return a == b
        case (.rejected(let a), .rejected(let b)): return a == b
        case (.other, .other): return true
        default: return false
        }
    }
}

/// The run's decisions as a pure function of its definition, its folded state, an input and the time.
public struct RunDecider: Sendable {
    public let definition: FlowDefinition
    public let registry: ActionRegistry
    static let defaultRetry = RetryPolicy(max_attempts: 3, backoff: "exponential", initial_ms: 200, max_ms: 30_000)
    static let defaultTimeoutSec = 300.0

    public init(definition: FlowDefinition, registry: ActionRegistry = .builtIn) {
        self.definition = definition
        self.registry = registry
    }

    public static func idempotencyKey(runID: String, stepID: String) -> String { "\(runID)/\(stepID)" }
    public static func commandID(runID: String, stepID: String, attempt: Int) -> String { "\(runID)/\(stepID)/\(attempt)" }

    /// Splits a command id back into run, step and attempt.
    public static func parseCommandID(_ id: String) -> (runID: String, stepID: String, attempt: Int)? {
        let parts = id.split(separator: "/")
        guard parts.count == 3, let attempt = Int(parts[2]) else { return nil }
        return (String(parts[0]), String(parts[1]), attempt)
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

    public func decide(_ state: RunState, _ input: RunInput, now: Date, random: () -> Double = { Double.random(in: 0..<1) }) -> [RunStep] {
        guard !state.status.isTerminal else { return [] }
        switch input {
        case .advance:
            return advance(state, now: now)
        case .stepResult(let stepID, let attempt, let result, let sourceSequence):
            guard let step = state.step(stepID), step.status == .running, let last = step.lastAttempt,
                last.attempt == attempt, last.status == .running
            else { return [] }  // late, duplicate or for an attempt already timed out: the log keeps it, the run ignores it
            let finished = Timestamp.format(now)
            switch result {
            case .success(let output):
                return [.append(.stepAttemptSucceeded(StepAttemptSucceeded(
                    step_id: stepID, attempt: attempt, output: output, started_at: last.started_at, finished_at: finished,
                    source_sequence: sourceSequence)))]
            case .failure(let error):
                return failure(stepID, attempt: attempt, error: error, startedAt: last.started_at, now: now, random: random, sourceSequence: sourceSequence)
            }
        }
    }

    func retryPolicy(_ step: StepDefinition) -> RetryPolicy {
        step.retry ?? definition.defaults?.retry ?? Self.defaultRetry
    }

    func failure(
        _ stepID: String, attempt: Int, error: StepError, startedAt: String, now: Date, random: () -> Double, sourceSequence: UInt64? = nil
    ) -> [RunStep] {
        guard let step = definition.step(stepID) else { return [] }
        let policy = retryPolicy(step)
        let retry = error.retryable && !(policy.non_retryable ?? []).contains(error.kind) && attempt < (policy.max_attempts ?? 3)
        var retryAt: Date?
        if retry {
            retryAt = now.addingTimeInterval(Double(policy.delayMillis(after: attempt, random: random())) / 1000)
        }
        var steps: [RunStep] = [.append(.stepAttemptFailed(StepAttemptFailed(
            step_id: stepID, attempt: attempt, error: error, started_at: startedAt, finished_at: Timestamp.format(now),
            retry_at: retryAt.map(Timestamp.format), source_sequence: sourceSequence)))]
        if let retryAt { steps.append(.wakeUp(at: retryAt)) }
        return steps
    }

    func advance(_ state: RunState, now: Date) -> [RunStep] {
        var out: [RunStep] = []
        let context = Self.context(state)
        let nowText = Timestamp.format(now)
        // Steps in flight: time out the late ones, remember the next deadline.
        for record in state.steps where record.status == .running {
            guard let step = definition.step(record.step_id), let last = record.lastAttempt,
                let started = Timestamp.parse(last.started_at)
            else { continue }
            let deadline = started.addingTimeInterval(step.timeout_sec ?? definition.defaults?.timeout_sec ?? Self.defaultTimeoutSec)
            if deadline <= now {
                out += failure(
                    record.step_id, attempt: last.attempt,
                    error: StepError(kind: "timeout", message: "no answer within \(Int(deadline.timeIntervalSince(started)))s", retryable: true),
                    startedAt: last.started_at, now: now, random: { Double.random(in: 0..<1) })
            } else {
                out.append(.wakeUp(at: deadline))
            }
        }
        if out.contains(where: { if case .append = $0 { return true } else { return false } }) { return out }

        // A step failed for good: the run fails.
        if let failed = state.steps.first(where: { $0.status == .failed }) {
            let error = failed.lastAttempt?.error
            return [.append(.runFailed(FlowRunFailed(error: RunError(
                code: error?.kind ?? "step_failed",
                message: "step \(failed.step_id) failed after \(failed.attempts.count) attempt(s): \(error?.message ?? "unknown error")",
                step_id: failed.step_id))))]
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
            out += start(step, attempt: attempt, state: state, context: context, now: now, nowText: nowText)
        }
        if !out.isEmpty { return out }

        // Every step done: render the output and finish.
        guard state.steps.allSatisfy({ $0.status.isDone }) else { return [] }
        let output: JSONValue
        do {
            output = try Template.render(definition.output ?? .null, context: context, at: "output")
        } catch {
            return [.append(.runFailed(FlowRunFailed(error: RunError(code: "output_template", message: "the output template failed: \(error)"))))]
        }
        var steps: [RunStep] = []
        if state.mode == .live {
            steps.append(.publishOutput(FlowOutputProduced(
                run_id: state.run_id, flow_id: state.flow_id, flow_version: state.flow_version, message_id: state.message_id,
                channel: state.channel, text: output["text"]?.stringValue, data: output["data"] ?? output)))
        }
        steps.append(.append(.runSucceeded(FlowRunSucceeded(output: output))))
        return steps
    }

    /// The attempts in flight (after a restart): each rebuilt with the same command id and idempotency key, so that
    /// carrying it out again is deduplicated by the service that receives it.
    public func inFlight(_ state: RunState) -> [(execution: StepExecution, startedAt: Date)] {
        guard !state.status.isTerminal else { return [] }
        let context = Self.context(state)
        var out: [(StepExecution, Date)] = []
        for record in state.steps where record.status == .running {
            guard let step = definition.step(record.step_id), let last = record.lastAttempt,
                let started = Timestamp.parse(last.started_at),
                let request = try? Template.render(step.with ?? .object([:]), context: context)
            else { continue }
            let timeout = step.timeout_sec ?? definition.defaults?.timeout_sec ?? Self.defaultTimeoutSec
            out.append((StepExecution(
                runID: state.run_id, stepID: step.id, attempt: last.attempt, action: step.action, request: request,
                idempotencyKey: Self.idempotencyKey(runID: state.run_id, stepID: step.id),
                commandID: Self.commandID(runID: state.run_id, stepID: step.id, attempt: last.attempt),
                deadline: started.addingTimeInterval(timeout), onBehalfOf: onBehalfOf(state)), started))
        }
        return out
    }

    func onBehalfOf(_ state: RunState) -> JSONValue {
        definition.run_as == "service"
            ? .object(["service": "ledgerflow"])
            : .object(["user_id": state.trigger.data?[path: "user.id"] ?? .string(state.actor)])
    }

    func start(_ step: StepDefinition, attempt: Int, state: RunState, context: JSONValue, now: Date, nowText: String) -> [RunStep] {
        let request: JSONValue
        do {
            request = try Template.render(step.with ?? .object([:]), context: context, at: "steps.\(step.id).with")
        } catch {
            return failure(step.id, attempt: attempt, error: StepError(kind: "template", message: "\(error)", retryable: false),
                startedAt: nowText, now: now, random: { 0 })
        }
        let spec = registry[step.action]
        // Local actions run inside the decision: one event records the whole attempt.
        if spec?.kind == .local {
            return [.append(.stepAttemptSucceeded(StepAttemptSucceeded(
                step_id: step.id, attempt: attempt, output: request["value"] ?? .null, started_at: nowText, finished_at: nowText)))]
        }
        if state.mode == .dry, spec?.sideEffect ?? true {
            let simulated: JSONValue = .object(["simulated": true, "action": .string(step.action), "request": request])
            return [.append(.stepAttemptSucceeded(StepAttemptSucceeded(
                step_id: step.id, attempt: attempt, output: simulated, started_at: nowText, finished_at: nowText)))]
        }
        let key = Self.idempotencyKey(runID: state.run_id, stepID: step.id)
        let commandID = Self.commandID(runID: state.run_id, stepID: step.id, attempt: attempt)
        let timeout = step.timeout_sec ?? definition.defaults?.timeout_sec ?? Self.defaultTimeoutSec
        let onBehalfOf = onBehalfOf(state)
        return [
            .append(.stepAttemptStarted(StepAttemptStarted(
                step_id: step.id, attempt: attempt, idempotency_key: key, command_id: commandID, started_at: nowText, request: request))),
            .execute(StepExecution(
                runID: state.run_id, stepID: step.id, attempt: attempt, action: step.action, request: request, idempotencyKey: key,
                commandID: commandID, deadline: now.addingTimeInterval(timeout), onBehalfOf: onBehalfOf)),
            .wakeUp(at: now.addingTimeInterval(timeout)),
        ]
    }
}
