public import LedgerCore
public import LedgerEngine

/// What the API asks of the engine about runs: start one, cancel one, redrive a failed one.
public protocol RunService: Sendable {
    /// Starts a manual run of an active flow, as an artificial signal; the same idempotency key gives the same run.
    func requestRun(_ request: ManualRunRequest) async throws -> RunStart
    /// Cancels a run that has not finished.
    func cancelRun(_ runID: String, actor: ActorRef, reason: String?) async throws
    /// Re-runs a failed run from `fromStep` (default: its failed step).
    func redriveRun(_ runID: String, fromStep: String?, actor: ActorRef) async throws
}

extension Engine: RunService {}
