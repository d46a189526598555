import Synchronization

/// How many events this process has written as JSON and read from JSON, for the metrics
/// `ledgerflow_events_encoded_total` and `ledgerflow_events_decoded_total`. Counted where every event is coded:
/// encoded in `LedgerEvent.Body.eventBytes` (the engine's own events, once each by whoever appends it) and
/// `EventCodec.encode` (every other CloudEvent it sends: outputs, commands, signals); decoded in
/// `LedgerEvent(json:)` and `LedgerEvent(from:)` (an event of the log, read by a consumer) and `decodeInbound` (a
/// message another service sent). A call is counted when it starts, so a retried append or a refused message counts
/// too. After a run, the two counts say whether some path codes the same event twice. Counted for the whole
/// process (the coding functions are pure and shared), with relaxed atomic adds.
public enum EventCoding {
    private static let encodedCount = Atomic<Int>(0)
    private static let decodedCount = Atomic<Int>(0)

    /// Events written as JSON since the process started.
    public static var encoded: Int { encodedCount.load(ordering: .relaxed) }
    /// Log messages read into events since the process started.
    public static var decoded: Int { decodedCount.load(ordering: .relaxed) }

    static func countEncoded() { encodedCount.add(1, ordering: .relaxed) }
    static func countDecoded() { decodedCount.add(1, ordering: .relaxed) }
}
