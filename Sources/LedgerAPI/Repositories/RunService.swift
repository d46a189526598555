public import LedgerCore
public import LedgerEngine

/// What the API asks of the engine about runs: start one, cancel one, redrive a failed one.
public protocol RunService: Sendable {
    /// Starts a manual run of an active flow; the same idempotency key gives the same run.
    func requestRun(
        flowID: String, input: JSONValue, mode: RunMode, idempotencyKey: String?, actor: String
    )
        async throws -> RunStart
    /// Cancels a run that has not finished.
    func cancelRun(_ runID: String, actor: String, reason: String?) async throws
    /// Re-runs a failed run from `fromStep` (default: its failed step).
    func redriveRun(_ runID: String, fromStep: String?, actor: String) async throws
}

extension Engine: RunService {}
