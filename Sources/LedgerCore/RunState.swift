/// Run status (SPEC §5): `PENDING` → `RUNNING` → `SUCCEEDED` | `FAILED` | `CANCELLED`.
public enum RunStatus: String, Codable, Sendable {
    case pending = "PENDING"
    case running = "RUNNING"
    case succeeded = "SUCCEEDED"
    case failed = "FAILED"
    case cancelled = "CANCELLED"

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// Step status (SPEC §5): `QUEUED` → `RUNNING` → `SUCCEEDED` | `FAILED` | `SKIPPED` | `COMPENSATED`.
public enum StepStatus: String, Codable, Sendable {
    case queued = "QUEUED"
    case running = "RUNNING"
    case succeeded = "SUCCEEDED"
    case failed = "FAILED"
    case skipped = "SKIPPED"
    case compensated = "COMPENSATED"

    public var isDone: Bool { self == .succeeded || self == .skipped }
}

public struct AttemptRecord: Codable, Sendable, Equatable {
    public var attempt: Int
    public var started_at: String
    public var finished_at: String?
    public var status: StepStatus
    public var error: StepError?
    public var retry_at: String?
}

public struct StepRecord: Codable, Sendable, Equatable {
    public var step_id: String
    public var status: StepStatus
    public var attempts: [AttemptRecord]
    public var output: JSONValue?
    public var idempotency_key: String?
    public var command_id: String?
    public var skipped_reason: String?

    public init(step_id: String) {
        self.step_id = step_id
        self.status = .queued
        self.attempts = []
    }

    public var lastAttempt: AttemptRecord? { attempts.last }
}

/// A run as the fold of its events: what the engine decides from and what `GET /automation/runs/{id}` shows.
public struct RunState: Codable, Sendable, Equatable {
    public var run_id: String
    public var flow_id: String
    public var flow_version: Int
    public var definition_hash: String
    public var status: RunStatus
    public var mode: RunMode
    public var trigger: RunTrigger
    public var actor: String
    public var input: JSONValue
    public var dedup_key: String?
    public var message_id: String?
    public var channel: JSONValue?
    public var created_at: String
    public var started_at: String?
    public var updated_at: String
    public var finished_at: String?
    public var steps: [StepRecord]
    public var output: JSONValue?
    public var error: RunError?
    /// The stream sequence of the run's last event: the expected last subject sequence of its next decision.
    public var last_sequence: UInt64

    public func step(_ id: String) -> StepRecord? { steps.first { $0.step_id == id } }

    mutating func updateStep(_ id: String, _ change: (inout StepRecord) -> Void) {
        if let index = steps.firstIndex(where: { $0.step_id == id }) {
            change(&steps[index])
        } else {
            var record = StepRecord(step_id: id)
            change(&record)
            steps.append(record)
        }
    }

    /// The fold: the state after `event`, stored at stream sequence `sequence`. Every transition is here.
    public static func evolve(_ state: RunState?, _ event: LedgerEvent, sequence: UInt64) -> RunState? {
        if case .runStarted(let started) = event.body {
            guard state == nil else { return state }  // a second start of the same run id is refused by the log
            return RunState(
                run_id: started.run_id, flow_id: started.flow_id, flow_version: started.flow_version,
                definition_hash: started.definition_hash, status: .running, mode: started.mode, trigger: started.trigger,
                actor: started.actor, input: started.input, dedup_key: started.dedup_key, message_id: started.message_id,
                channel: started.channel, created_at: event.time, started_at: event.time, updated_at: event.time,
                finished_at: nil, steps: started.step_ids.map(StepRecord.init(step_id:)), output: nil, error: nil,
                last_sequence: sequence)
        }
        guard var state else { return nil }
        switch event.body {
        case .stepAttemptStarted(let e):
            state.updateStep(e.step_id) { step in
                step.status = .running
                step.idempotency_key = e.idempotency_key
                step.command_id = e.command_id
                step.attempts.append(AttemptRecord(attempt: e.attempt, started_at: e.started_at, finished_at: nil, status: .running, error: nil, retry_at: nil))
            }
        case .stepAttemptSucceeded(let e):
            state.updateStep(e.step_id) { step in
                step.status = .succeeded
                step.output = e.output
                step.finishAttempt(e.attempt, startedAt: e.started_at, finishedAt: e.finished_at, status: .succeeded, error: nil, retryAt: nil)
            }
        case .stepAttemptFailed(let e):
            state.updateStep(e.step_id) { step in
                step.status = e.retry_at == nil ? .failed : .queued
                step.finishAttempt(e.attempt, startedAt: e.started_at, finishedAt: e.finished_at, status: .failed, error: e.error, retryAt: e.retry_at)
            }
        case .stepSkipped(let e):
            state.updateStep(e.step_id) { step in
                step.status = .skipped
                step.skipped_reason = e.reason
            }
        case .runSucceeded(let e):
            state.status = .succeeded
            state.output = e.output
            state.finished_at = event.time
        case .runFailed(let e):
            state.status = .failed
            state.error = e.error
            state.finished_at = event.time
        default:
            return state
        }
        state.updated_at = event.time
        state.last_sequence = sequence
        return state
    }
}

extension StepRecord {
    mutating func finishAttempt(_ attempt: Int, startedAt: String, finishedAt: String, status: StepStatus, error: StepError?, retryAt: String?) {
        if let index = attempts.lastIndex(where: { $0.attempt == attempt }) {
            attempts[index].finished_at = finishedAt
            attempts[index].status = status
            attempts[index].error = error
            attempts[index].retry_at = retryAt
        } else {
            attempts.append(AttemptRecord(attempt: attempt, started_at: startedAt, finished_at: finishedAt, status: status, error: error, retry_at: retryAt))
        }
    }
}
