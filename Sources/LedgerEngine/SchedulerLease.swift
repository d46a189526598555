import Foundation
import LedgerCore
import LedgerNATS
import Logging
import Synchronization

/// The scheduler's leader lease: one key (`_leader.scheduler`) in the `ledgerflow_workers` bucket, written only with
/// the expected revision of the key, so of two processes writing at once one wins. The holder renews it three times
/// per lease; another process takes it over when the key's revision has not changed for a whole lease, measured on
/// its own monotonic clock while its own heartbeats are answered (no two clocks are compared). A holder counts
/// itself leader only for half a lease after its last renewal was answered, so it stops before anyone can take over.
/// Firings are fenced in the log anyway (each firing's outcome expects an empty subject): two leaders for a moment
/// could never start a firing twice.
public final class SchedulerLease: Sendable {
    let ledger: Ledger
    let holder: String
    let ttl: Duration
    let logger: Logger
    let clock = ContinuousClock()

    struct State {
        var revision: UInt64?
        var renewedAt: ContinuousClock.Instant?
        var observed: (revision: UInt64, since: ContinuousClock.Instant)?
        var bucketReady = false
        var wasLeader = false
    }
    let state = Mutex(State())

    public static let key = "$KV.\(Ledger.workersBucket)._leader.scheduler"

    init(ledger: Ledger, holder: String, ttl: Duration, logger: Logger) {
        self.ledger = ledger
        self.holder = holder
        self.ttl = ttl
        self.logger = logger
    }

    /// Whether this process holds the lease now.
    public var isLeader: Bool {
        let now = clock.now
        let half = ttl / 2
        return state.withLock { s in s.revision != nil && s.renewedAt.map { now - $0 < half } ?? false }
    }

    struct Payload: Codable {
        var holder: String
        var time: String
    }

    /// One step: acquire, renew or watch the lease. `healthy`: this process's own heartbeats are answered.
    func step(healthy: Bool) async {
        do {
            if !state.withLock({ $0.bucketReady }) {
                try await ledger.ensureWorkersBucket()
                state.withLock { $0.bucketReady = true }
            }
            let last = try await ledger.api.lastMessage(stream: Ledger.workersStream, subject: Self.key)
            let current = last.flatMap { try? JSONDecoder().decode(Payload.self, from: Data($0.payload)) }
            let now = clock.now
            let mine = state.withLock { $0.revision }
            if let last {
                if current?.holder == holder, mine == last.seq || mine == nil {
                    // Ours (or ours from before a restart under the same worker id): renew it.
                    try await write(expected: last.seq)
                    return
                }
                // Another holder: take over once its revision has stood still for a lease.
                let stale = state.withLock { s -> Bool in
                    s.revision = nil
                    guard let seen = s.observed, seen.revision == last.seq else {
                        s.observed = (last.seq, now)
                        return false
                    }
                    return now - seen.since > ttl
                }
                if stale, healthy {
                    logger.info(
                        "the scheduler's leader stopped renewing its lease; taking over",
                        metadata: ["ledger.previous_leader": "\(current?.holder ?? "?")"])
                    try await write(expected: last.seq)
                }
            } else {
                try await write(expected: 0)
            }
        } catch {
            let lost = state.withLock { s -> Bool in
                defer {
                    s.revision = nil
                    s.wasLeader = false
                }
                if let natsError = error as? NATSError, natsError.jetStreamError == nil { s.bucketReady = false }
                return s.wasLeader
            }
            if lost {
                logger.warning("the scheduler's lease was lost", metadata: [LogKey.error: "\(error)"])
            }
        }
    }

    func write(expected: UInt64) async throws {
        let payload = try JSONEncoder().encode(Payload(holder: holder, time: Timestamp.now()))
        let ack = try await ledger.publisher.publish(
            OutgoingMessage(subject: Self.key, payload: Array(payload), expectedLastSubjectSequence: expected))
        let now = clock.now
        let became = state.withLock { s -> Bool in
            s.revision = ack.sequence
            s.renewedAt = now
            s.observed = nil
            defer { s.wasLeader = true }
            return !s.wasLeader
        }
        if became { logger.info("this process is the scheduler's leader", metadata: ["ledger.worker": "\(holder)"]) }
    }
}
