public import Foundation
public import LedgerCore
public import LedgerEngine
public import LedgerProjections

/// The read models of runs: one run as stored, recent runs, failed runs, and how far the models have read the log.
public protocol RunQueries: Sendable {
    /// Calls `body` with the stored JSON of the run, valid only inside `body`; nil if there is no such run.
    func withRunJSON<R>(_ runID: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R?
    /// Recent runs, newest first, optionally filtered by flow and status.
    func runs(flowID: String?, status: String?, limit: Int) throws -> [RunState]
    /// The stored JSON of the runs `runs(flowID:status:limit:)` lists, in its order, valid only inside `body`.
    func withRunsJSON<R>(
        flowID: String?, status: String?, limit: Int, _ body: ([UnsafeRawBufferPointer]) throws -> R
    ) throws -> R
    /// The failed runs: the dead letters.
    func failedRuns() throws -> [RunState]
    /// The log sequence the read models reflect.
    var position: UInt64 { get }
    /// Waits until the read models reflect `sequence` (true) or `timeout` passes (false).
    func waitForPosition(_ sequence: UInt64, timeout: Duration) async -> Bool
}

extension ReadModelStore: RunQueries {
    public func failedRuns() throws -> [RunState] {
        try failedRunIDs().compactMap { try run($0) }
    }

    public var position: UInt64 { progress.position }

    public func waitForPosition(_ sequence: UInt64, timeout: Duration) async -> Bool {
        await progress.wait(for: sequence, timeout: timeout)
    }
}

/// The audit trail's read model.
public protocol AuditQueries: Sendable {
    /// Entries newest first, filtered by flow, actor (id or `type:id`) and time.
    func audit(flowID: String?, actor: String?, since: Date?, limit: Int) throws -> [AuditEntry]
}

extension ReadModelStore: AuditQueries {}
