import Foundation
import LedgerCore
import LedgerNATS

/// The workers' heartbeats: a JetStream key-value bucket (`ledgerflow_workers`, one key per worker, one revision
/// kept), outside the log: liveness is not history.
extension Ledger {
    public static let workersBucket = "ledgerflow_workers"
    static var workersStream: String { "KV_\(workersBucket)" }

    static func workerKey(_ worker: String) -> String { "$KV.\(workersBucket).\(worker)" }

    /// Creates the bucket when it is missing (a bucket that exists is used as it is). Its replicas follow the
    /// log's; a worker's key is forgotten a day after its last heartbeat.
    func ensureWorkersBucket() async throws {
        let config: [String: Any] = [
            "name": Self.workersStream, "subjects": ["$KV.\(Self.workersBucket).>"], "retention": "limits",
            "storage": "file", "discard": "new", "max_msgs_per_subject": 1, "max_age": 86_400 * 1_000_000_000,
            "num_replicas": configuration.replicas, "allow_direct": true, "allow_rollup_hdrs": true,
            "deny_delete": true, "deny_purge": false, "max_msgs": -1, "max_bytes": -1, "max_msg_size": -1,
            "duplicate_window": 120 * 1_000_000_000,
            "description": "Ledgerflow: which workers are alive (one heartbeat per worker)",
        ]
        do {
            _ = try await api.callRaw("STREAM.INFO.\(Self.workersStream)")
        } catch let error as NATSError where error.jetStreamError == .streamNotFound {
            let payload = try JSONSerialization.data(withJSONObject: config)
            do {
                _ = try await api.callRaw("STREAM.CREATE.\(Self.workersStream)", payload: Array(payload))
            } catch let error as NATSError where error.jetStreamError == .streamNameInUse {
                return  // another worker created it meanwhile
            }
        }
    }

    /// Records that `worker` is alive (its key's new revision). Returns the revision (a stream sequence).
    @discardableResult
    func heartbeat(worker: String, payload: [UInt8]) async throws -> UInt64 {
        try await publisher.publish(OutgoingMessage(subject: Self.workerKey(worker), payload: payload)).sequence
    }

    /// The revision of `worker`'s last heartbeat, nil when it has none.
    func lastHeartbeat(of worker: String) async throws -> UInt64? {
        try await api.lastMessage(stream: Self.workersStream, subject: Self.workerKey(worker))?.seq
    }
}
