import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging

extension Engine {
    /// Feeds the circuit breakers with the outcome of calls to other services (http.request keeps its own per host).
    func recordOutcome(_ body: LedgerEvent.Body, _ definition: FlowDefinition) {
        switch body {
        case .stepAttemptSucceeded(let e), .compensationSucceeded(let e):
            if let action = action(of: e.step_id, body, definition), registry[action]?.kind != .local {
                breakers.record(action, success: true)
            }
        case .stepAttemptFailed(let e), .compensationFailed(let e):
            guard e.error.kind != .circuitOpen, e.error.kind != .template, e.error.kind != .cancelled else { return }
            if let action = action(of: e.step_id, body, definition), registry[action]?.kind != .local {
                breakers.record(action, success: false)
            }
        default:
            break
        }
    }

    func action(of stepID: String, _ body: LedgerEvent.Body, _ definition: FlowDefinition) -> String? {
        guard let step = definition.step(stepID) else { return nil }
        switch body {
        case .compensationSucceeded, .compensationFailed: return step.compensate?.action
        default: return step.action == "http.request" ? nil : step.action
        }
    }

    /// A step's result as the run may record it: an output nested deeper than the log's documents allow is a
    /// failure of the attempt (the event could not be read back otherwise).
    static func checked(_ input: RunCommand) -> RunCommand {
        if case .recordAnswer(let target, let attempt, .success(let output), let source, let service) = input,
            output.depth > Limits.stepOutputDepth
        {
            return .recordAnswer(
                target, attempt: attempt, result: tooDeep, sourceSequence: source, service: service)
        }
        guard case .recordResult(let target, let attempt, .success(let output), let source) = input,
            output.depth > Limits.stepOutputDepth
        else { return input }
        return .recordResult(target, attempt: attempt, result: tooDeep, sourceSequence: source)
    }

    static let tooDeep = StepResult.failure(
        StepError(
            kind: .outputTooDeep,
            message: "the step's output is nested more than \(Limits.stepOutputDepth) levels deep",
            retryable: false))

    /// What to record instead of an event the log can never store (larger or deeper than it keeps).
    static func replacement(for body: LedgerEvent.Body, _ problem: UnstorableEvent) -> LedgerEvent.Body? {
        let now = Timestamp.now()
        let too = problem.problem
        func failure(_ what: String, _ kind: String) -> StepError {
            StepError(
                kind: StepErrorKind("\(kind)_\(too)"),
                message: "\(what) cannot be recorded in the log (\(problem.detail)); make it smaller", retryable: false)
        }
        switch body {
        case .stepAttemptStarted(let e):
            return .stepAttemptFailed(
                StepAttemptFailed(
                    step_id: e.step_id, attempt: e.attempt, error: failure("the step's rendered request", "request"),
                    started_at: e.started_at, finished_at: now, retry_at: nil))
        case .stepAttemptSucceeded(let e):
            return .stepAttemptFailed(
                StepAttemptFailed(
                    step_id: e.step_id, attempt: e.attempt, error: failure("the step's output", "output"),
                    started_at: e.started_at, finished_at: now, retry_at: nil, source_sequence: e.source_sequence))
        case .compensationStarted(let e):
            return .compensationFailed(
                StepAttemptFailed(
                    step_id: e.step_id, attempt: e.attempt,
                    error: failure("the compensation's rendered request", "request"),
                    started_at: e.started_at, finished_at: now, retry_at: nil))
        case .compensationSucceeded(let e):
            return .compensationFailed(
                StepAttemptFailed(
                    step_id: e.step_id, attempt: e.attempt, error: failure("the compensation's output", "output"),
                    started_at: e.started_at, finished_at: now, retry_at: nil, source_sequence: e.source_sequence))
        case .runSucceeded:
            return .runFailed(
                FlowRunFailed(
                    error: RunError(
                        code: "output_\(too)",
                        message:
                            "the run's rendered output cannot be recorded in the log (\(problem.detail)); make the flow's output smaller"
                    )))
        default:
            return nil
        }
    }
}

extension RunState {
    /// The run's identity as log metadata (`ledger.run.id`, `ledger.flow.id`, `ledger.flow.version`, and
    /// `ledger.trace.id` when the run has a trace).
    var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            LogKey.runID: "\(run_id)", LogKey.flowID: "\(flow_id)", LogKey.flowVersion: "\(flow_version)",
        ]
        if let traceID = TraceParent.traceID(in: traceparent) { metadata[LogKey.traceID] = "\(traceID)" }
        return metadata
    }
}
