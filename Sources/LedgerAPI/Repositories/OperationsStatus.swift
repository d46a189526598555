public import LedgerEngine
import Synchronization

/// How far the log has gone and whether it is reachable: what `/health`, `/metrics` and a fresh run's lookup ask.
public protocol LogStatus: Sendable {
    /// True while the connection to the log is up.
    var isConnected: Bool { get }
    /// Where the log is served (the NATS URL).
    var url: String { get }
    /// How much the log holds right now.
    func state() async throws -> LogState
    /// The sequence of the last message in the log.
    func lastSequence() async throws -> UInt64
}

extension Ledger: LogStatus {}

/// What the engine and its read models report on `/health` and `/metrics`.
public protocol OperationsStatus: Sendable {
    /// True once the engine has recovered and consumes.
    var isReady: Bool { get }
    /// Unfinished runs this process is driving.
    var activeRuns: Int { get }
    /// The engine's metrics: what it counted since this process started, in a registry of its own.
    var metrics: EngineMetrics { get }
    /// The log sequence the read models reflect.
    var projectionPosition: UInt64 { get }
    /// Log messages the read models could not apply.
    var projectionSkipped: Int { get }
    /// Stored states the read models' folds read back from LMDB and parsed since the process started.
    var projectionStatesReadBack: Int { get }
    /// Sets the schedule counters of `metrics` from the schedules read model (the same totals on every process).
    func sampleScheduleMetrics()
}

extension Engine: OperationsStatus {
    public var isReady: Bool { ready.load(ordering: .acquiring) }
    public var activeRuns: Int { activeRunCount }
    public var projectionPosition: UInt64 { store.progress.position }
    public var projectionSkipped: Int { store.skippedCount }
    public var projectionStatesReadBack: Int { store.statesReadBack }
    public func sampleScheduleMetrics() {
        if let states = try? store.schedules() { metrics.sampleSchedules(states) }
    }
}
