/// The metadata keys of Ledgerflow's log lines, in one place, so every line about a run (or a flow, or a log
/// position) can be found by the same key.
public enum LogKey {
    public static let runID = "ledger.run.id"
    public static let flowID = "ledger.flow.id"
    public static let flowVersion = "ledger.flow.version"
    /// The W3C trace id of the run's trace (32 hex digits), as tracing backends show it.
    public static let traceID = "ledger.trace.id"
    public static let stepID = "ledger.step.id"
    public static let attempt = "ledger.step.attempt"
    public static let sequence = "ledger.sequence"
    public static let subject = "ledger.subject"
    public static let eventType = "ledger.event.type"
    public static let consumer = "ledger.consumer"
    public static let error = "ledger.error"
    public static let delay = "ledger.delay"
    public static let delivery = "ledger.delivery"
}
