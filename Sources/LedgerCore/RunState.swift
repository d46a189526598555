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

/// One attempt of a step (or of its compensation) as the run shows it.
public struct AttemptRecord: Codable, Sendable, Equatable {
    public var attempt: Int
    public var started_at: String
    public var finished_at: String?
    public var status: StepStatus
    public var error: StepError?
    public var retry_at: String?
    /// The receiver's HTTP status (webhook delivery attempts only).
    public var http_status: Int?
}

/// The compensation of a completed step, once the run failed or was cancelled.
public struct CompensationRecord: Codable, Sendable, Equatable {
    /// `RUNNING`, `QUEUED` (waiting for a retry), `SUCCEEDED` or `FAILED` (attempts exhausted; recorded).
    public var status: StepStatus
    public var attempts: [AttemptRecord]
    public var output: JSONValue?
}

/// A step of a run: its status, attempts, output and compensation.
public struct StepRecord: Codable, Sendable, Equatable {
    public var step_id: String
    public var status: StepStatus
    public var attempts: [AttemptRecord]
    public var output: JSONValue?
    public var idempotency_key: String?
    public var command_id: String?
    public var skipped_reason: String?
    public var compensation: CompensationRecord?
    /// Bumped when a redrive re-runs a step whose effect was compensated: its next attempts get a new
    /// idempotency key, since the old effect was undone.
    public var generation: Int
    /// Answers to attempts the run had abandoned (cancelled or timed out) that arrived after all: their effects
    /// happened. Absent until one arrives.
    public var late_results: [LateResult]?

    public init(step_id: String) {
        self.step_id = step_id
        self.status = .queued
        self.attempts = []
        self.generation = 0
    }

    public var lastAttempt: AttemptRecord? { attempts.last }

    /// The step's effect arrived late but the step did not succeed: nothing else in the run accounts for that
    /// effect, so it is undone when the step has a compensation (until its compensation ends, either way).
    public var hasLateEffectToUndo: Bool {
        guard status == .failed, (late_results ?? []).contains(where: \.compensable) else { return false }
        switch compensation?.status {
        case nil, .running?, .queued?: return true
        default: return false
        }
    }
}

/// An answer to an abandoned attempt, recorded when it arrived.
public struct LateResult: Codable, Sendable, Equatable {
    public var attempt: Int
    public var received_at: String
    public var output: JSONValue
    public var source_sequence: UInt64?
    /// The step has a compensation (see `StepLateResultRecorded.compensable`).
    public var compensable: Bool
}

/// Where a run is in its life: what the decider does with a command, and (derived) the run's status.
public enum RunPhase: Sendable, Equatable {
    /// Steps run (status `RUNNING`).
    case running
    /// The run failed: the compensations of its completed steps run, newest first (status `RUNNING`).
    case compensating
    /// `actor` asked to cancel: running steps were abandoned, compensations run, then the run is cancelled (status
    /// `RUNNING`).
    case cancelling(actor: String)
    /// Finished: every step done and the output rendered.
    case succeeded
    /// Finished: a step (or the run's deadline, or its output) failed; a redrive can run it again.
    case failed
    /// Finished: cancelled by `actor`.
    case cancelled(actor: String)

    /// The run's status as the API and the read models show it.
    public var status: RunStatus {
        switch self {
        case .running, .compensating, .cancelling: return .running
        case .succeeded: return .succeeded
        case .failed: return .failed
        case .cancelled: return .cancelled
        }
    }
}

/// A run as the fold of its events: what the engine decides from and what `GET /automation/runs/{id}` shows.
public struct RunState: Sendable, Equatable {
    public var run_id: String
    public var flow_id: String
    public var flow_version: Int
    public var definition_hash: String
    /// Where the run is; stored as `status`, `phase` (`compensating`, or absent) and `cancel_requested_by`.
    public var phase: RunPhase
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
    /// Steps in the order they succeeded (compensations run in the reverse order).
    public var completion_order: [String]
    public var redrives: Int
    /// The stream sequence of the run's last event: the expected last subject sequence of its next decision.
    public var last_sequence: UInt64
    /// Where the run's `FlowOutputProduced` sits in the log, once it was published (so a run resumed after a
    /// crash, however late, never publishes its output twice).
    public var output_sequence: UInt64?
    /// The worker driving the run: the one that started it, or the last to claim it (nil in logs from before
    /// workers were recorded: any worker may claim such a run).
    public var worker: String?
    /// The actor's type (`ActorRef`): `admin`/`operator`/`viewer` for an API token, `user`, `service`, `system`.
    public var actor_type: String?
    /// The user a `run_as: user` flow acts for, when it is not the trigger's user (a manual run's `on_behalf_of`).
    public var on_behalf_of: String?
    /// The run's trace (`FlowRunStarted.traceparent`).
    public var traceparent: String?
    /// The immediate acknowledgement (`output.ack`), once the run recorded it.
    public var ack: FlowRunAcknowledged?
    /// The webhook delivery of the final output (`output.webhook`), once the run succeeded.
    public var delivery: DeliveryRecord?

    /// `RUNNING` until the run finishes; then `SUCCEEDED`, `FAILED` or `CANCELLED`.
    public var status: RunStatus { phase.status }

    /// Finished, with nothing left to do: a finished run still undoes the late effect of an abandoned step (see
    /// `StepRecord.hasLateEffectToUndo`) before it is left alone.
    /// A succeeded run also delivers its output to its webhook before it is left alone (a dead letter is settled).
    public var isSettled: Bool {
        status.isTerminal && !steps.contains { $0.hasLateEffectToUndo } && !(delivery?.isPending ?? false)
    }

    /// Who asked to cancel the run, once someone did.
    public var cancel_requested_by: String? {
        switch phase {
        case .cancelling(let actor), .cancelled(let actor): return actor
        case .running, .compensating, .succeeded, .failed: return nil
        }
    }

    public func step(_ id: String) -> StepRecord? { steps.first { $0.step_id == id } }

    /// The status of the step `id`, without copying its record (nil when the run has no such step).
    public func statusOfStep(_ id: String) -> StepStatus? {
        steps.firstIndex { $0.step_id == id }.map { steps[$0].status }
    }

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
        var state = state
        evolve(&state, event, sequence: sequence)
        return state
    }

    /// The fold in place: `state` becomes the state after `event` (nil stays nil unless the event starts a run).
    /// A state held nowhere else is changed without copying its steps.
    public static func evolve(_ state: inout RunState?, _ event: LedgerEvent, sequence: UInt64) {
        if state == nil {
            guard case .runStarted(let started) = event.body else { return }
            state = RunState(
                run_id: started.run_id, flow_id: started.flow_id, flow_version: started.flow_version,
                definition_hash: started.definition_hash, phase: .running, mode: started.mode, trigger: started.trigger,
                actor: started.actor, input: started.effectiveInput, dedup_key: started.dedup_key,
                message_id: started.message_id,
                channel: started.channel, created_at: event.time, started_at: event.time, updated_at: event.time,
                finished_at: nil, steps: started.step_ids.map(StepRecord.init(step_id:)), output: nil, error: nil,
                completion_order: [], redrives: 0, last_sequence: sequence, worker: started.worker,
                actor_type: started.actor_type, on_behalf_of: started.on_behalf_of, traceparent: started.traceparent)
            return
        }
        state!.apply(event, sequence: sequence)
    }

    /// The state after `event` (stored at `sequence`), changed in place.
    public mutating func apply(_ event: LedgerEvent, sequence: UInt64) {
        switch event.body {
        case .runStarted:
            // A second start on the same subject changes nothing but the run's position.
            last_sequence = sequence
            return
        case .stepAttemptStarted(let e):
            updateStep(e.step_id) { step in
                step.status = .running
                step.idempotency_key = e.idempotency_key
                step.command_id = e.command_id
                step.attempts.append(
                    AttemptRecord(
                        attempt: e.attempt, started_at: e.started_at, finished_at: nil, status: .running, error: nil,
                        retry_at: nil))
            }
        case .stepAttemptSucceeded(let e):
            updateStep(e.step_id) { step in
                step.status = .succeeded
                step.output = e.output
                step.finishAttempt(
                    e.attempt, startedAt: e.started_at, finishedAt: e.finished_at, status: .succeeded, error: nil,
                    retryAt: nil)
            }
            completion_order.removeAll { $0 == e.step_id }
            completion_order.append(e.step_id)
        case .stepAttemptFailed(let e):
            updateStep(e.step_id) { step in
                step.status = e.retry_at == nil ? .failed : .queued
                step.finishAttempt(
                    e.attempt, startedAt: e.started_at, finishedAt: e.finished_at, status: .failed, error: e.error,
                    retryAt: e.retry_at)
            }
        case .stepSkipped(let e):
            updateStep(e.step_id) { step in
                step.status = .skipped
                step.skipped_reason = e.reason
            }
        case .stepLateResultRecorded(let e):
            updateStep(e.step_id) { step in
                var late = step.late_results ?? []
                late.append(
                    LateResult(
                        attempt: e.attempt, received_at: e.received_at, output: e.output,
                        source_sequence: e.source_sequence, compensable: e.compensable))
                step.late_results = late
                // A step that did not succeed shows what its late effect returned (its compensation reads it).
                if step.status != .succeeded, step.output == nil { step.output = e.output }
            }
        case .runSucceeded(let e):
            phase = .succeeded
            output = e.output
            finished_at = event.time
            if let url = e.webhook { delivery = DeliveryRecord(url: url) }
        case .runAcknowledged(let e):
            ack = e
        case .deliveryStarted, .deliverySucceeded, .deliveryFailed, .deliveryRedriven:
            guard delivery != nil else { break }
            delivery?.evolve(event.body)
        case .runFailed(let e):
            phase = .failed
            error = e.error
            finished_at = event.time
        case .runCompensating(let e):
            if case .running = phase { phase = .compensating }
            error = e.error
        case .compensationStarted(let e):
            updateStep(e.step_id) { step in
                var record = step.compensation ?? CompensationRecord(status: .running, attempts: [], output: nil)
                record.status = .running
                record.attempts.append(
                    AttemptRecord(
                        attempt: e.attempt, started_at: e.started_at, finished_at: nil, status: .running, error: nil,
                        retry_at: nil))
                step.compensation = record
            }
        case .compensationSucceeded(let e):
            updateStep(e.step_id) { step in
                var record = step.compensation ?? CompensationRecord(status: .running, attempts: [], output: nil)
                record.status = .succeeded
                record.output = e.output
                record.attempts.finish(
                    e.attempt, startedAt: e.started_at, finishedAt: e.finished_at, status: .succeeded, error: nil,
                    retryAt: nil)
                step.compensation = record
                step.status = .compensated
            }
        case .compensationFailed(let e):
            updateStep(e.step_id) { step in
                var record = step.compensation ?? CompensationRecord(status: .running, attempts: [], output: nil)
                record.status = e.retry_at == nil ? .failed : .queued
                record.attempts.finish(
                    e.attempt, startedAt: e.started_at, finishedAt: e.finished_at, status: .failed, error: e.error,
                    retryAt: e.retry_at)
                step.compensation = record
            }
        case .runCancelRequested(let e):
            phase = .cancelling(actor: e.actor)
            error = RunError(
                code: "cancelled", message: "cancelled by \(e.actor)\(e.reason.map { ": \($0)" } ?? "")")
            for index in steps.indices {
                switch steps[index].status {
                case .running:
                    steps[index].status = .failed
                    let attempt = steps[index].attempts.last?.attempt ?? 1
                    steps[index].attempts.finish(
                        attempt, startedAt: event.time, finishedAt: event.time, status: .failed,
                        error: StepError(
                            kind: .cancelled, message: "abandoned: the run was cancelled", retryable: false),
                        retryAt: nil)
                case .queued:
                    steps[index].status = .skipped
                    steps[index].skipped_reason = "the run was cancelled"
                default:
                    break
                }
            }
        case .runCancelled(let e):
            if case .cancelling(let actor) = phase {
                phase = .cancelled(actor: actor)
            } else {
                phase = .cancelled(actor: e.actor)
            }
            finished_at = event.time
        case .outputPublished:
            // On the output subject, not the run's: `last_sequence` stays the run subject's.
            output_sequence = output_sequence ?? sequence
            return
        case .other:
            // An event this version does not fold, on the run's subject: the run's position still moves past it,
            // or every later decision of the run would expect a stale sequence and be refused.
            last_sequence = sequence
            return
        case .runClaimed(let e):
            worker = e.worker
            last_sequence = sequence
            return
        case .runRedriven(let e):
            phase = .running
            error = nil
            finished_at = nil
            redrives += 1
            for id in e.reset_steps {
                updateStep(id) { step in
                    if step.status == .compensated { step.generation += 1 }
                    step.status = .queued
                    step.output = nil
                    step.compensation = nil
                    step.skipped_reason = nil
                    // A late effect is either undone by now (a new generation) or reused by the step's next
                    // attempt (same idempotency key): nothing about it is left for the run to do.
                    step.late_results = nil
                }
                completion_order.removeAll { $0 == id }
            }
        default:
            return
        }
        updated_at = event.time
        last_sequence = sequence
    }
}

extension StepRecord {
    mutating func finishAttempt(
        _ attempt: Int, startedAt: String, finishedAt: String, status: StepStatus, error: StepError?, retryAt: String?
    ) {
        attempts.finish(
            attempt, startedAt: startedAt, finishedAt: finishedAt, status: status, error: error, retryAt: retryAt)
    }
}

extension [AttemptRecord] {
    mutating func finish(
        _ attempt: Int, startedAt: String, finishedAt: String, status: StepStatus, error: StepError?, retryAt: String?
    ) {
        if let index = lastIndex(where: { $0.attempt == attempt }) {
            self[index].finished_at = finishedAt
            self[index].status = status
            self[index].error = error
            self[index].retry_at = retryAt
        } else {
            append(
                AttemptRecord(
                    attempt: attempt, started_at: startedAt, finished_at: finishedAt, status: status, error: error,
                    retry_at: retryAt))
        }
    }
}

extension DeliveryRecord {
    /// The delivery after one of its events.
    mutating func evolve(_ body: LedgerEvent.Body) {
        switch body {
        case .deliveryStarted(let e):
            status = .running
            idempotency_key = e.idempotency_key
            output_sequence = e.output_sequence
            attempts.append(
                AttemptRecord(
                    attempt: e.attempt, started_at: e.started_at, finished_at: nil, status: .running, error: nil,
                    retry_at: nil))
        case .deliverySucceeded(let e), .deliveryFailed(let e):
            let succeeded = e.error == nil
            status = succeeded ? .succeeded : (e.retry_at == nil ? .failed : .queued)
            attempts.finish(
                e.attempt, startedAt: e.started_at, finishedAt: e.finished_at ?? e.started_at,
                status: succeeded ? .succeeded : .failed, error: e.error, retryAt: e.retry_at)
            if let index = attempts.lastIndex(where: { $0.attempt == e.attempt }) {
                attempts[index].http_status = e.http_status
            }
        case .deliveryRedriven:
            status = .queued
            redrives += 1
            round_start = (attempts.last?.attempt ?? 0) + 1
        default:
            break
        }
    }
}
