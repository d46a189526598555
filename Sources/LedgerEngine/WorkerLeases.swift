import Foundation
import LedgerCore
public import Logging
import Synchronization

/// This process's lease among the workers sharing a log: its id, its heartbeat in the `ledgerflow_workers` bucket,
/// and what it has seen of the other workers' heartbeats.
///
/// A worker is judged stopped when its heartbeat's revision has not changed for longer than the lease, as measured
/// on this process's own monotonic clock, while this process's own heartbeats were answered all along (so after an
/// outage of NATS nobody is judged stopped until everyone had a lease's time to beat again). No two clocks are
/// compared. A worker that is only slow (paused longer than the lease) can be judged stopped: its runs are then
/// claimed by another, and the claim, appended at the run's expected sequence, fences it off (its next append is
/// refused and it lets the run go).
public final class WorkerLeases: Sendable {
    public let workerID: String
    /// How long a worker may go without a heartbeat before its runs are taken over.
    public let ttl: Duration
    let ledger: Ledger
    let logger: Logger
    let clock = ContinuousClock()

    struct Seen {
        var revision: UInt64?
        var since: ContinuousClock.Instant
    }
    struct State {
        var seen: [String: Seen] = [:]
        /// Since when every heartbeat of this worker has been answered (nil after a failure).
        var healthySince: ContinuousClock.Instant?
        var lastBeat: ContinuousClock.Instant?
        var bucketReady = false
        var failures = 0
        /// Workers already reported as stopped (each is logged once per silent revision).
        var reported: [String: UInt64?] = [:]
    }
    let state = Mutex(State())

    public init(ledger: Ledger, workerID: String? = nil, ttl: Duration, logger: Logger) {
        self.ledger = ledger
        self.workerID = workerID ?? Self.makeWorkerID()
        self.ttl = ttl
        self.logger = logger
    }

    /// `<host>-<pid>-<random>`, usable as a NATS subject token.
    public static func makeWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.prefix(40).map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_") ? c : "_"
        }
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return "\(String(host).isEmpty ? "worker" : String(host))-\(getpid())-\(random)"
    }

    /// How often this worker beats: three times per lease.
    var interval: Duration { ttl / 3 }

    /// Beats until cancelled; a failed beat is logged (once per outage) and tried again at the next interval.
    func keepAlive() async {
        while !Task.isCancelled {
            await beat()
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }

    /// One heartbeat. Returns whether it was answered.
    @discardableResult
    func beat() async -> Bool {
        do {
            if !state.withLock({ $0.bucketReady }) {
                try await ledger.ensureWorkersBucket()
                state.withLock { $0.bucketReady = true }
            }
            let payload = Array(
                "{\"worker\":\"\(workerID)\",\"pid\":\(getpid()),\"lease_ms\":\(ttl.milliseconds),\"time\":\"\(Timestamp.now())\"}"
                    .utf8)
            try await ledger.heartbeat(worker: workerID, payload: payload)
            let now = clock.now
            let recovered = state.withLock { s -> Bool in
                defer { s.failures = 0 }
                s.healthySince = s.healthySince ?? now
                s.lastBeat = now
                return s.failures > 0
            }
            if recovered { logger.info("worker heartbeat answered again", metadata: ["ledger.worker": "\(workerID)"]) }
            return true
        } catch {
            let first = state.withLock { s -> Bool in
                s.healthySince = nil
                s.bucketReady = false  // asked again next time: the bucket may have been deleted
                s.seen.removeAll()
                s.failures += 1
                return s.failures == 1
            }
            if first {
                logger.warning(
                    "worker heartbeat failed; other workers may take over this worker's runs if it lasts",
                    metadata: ["ledger.worker": "\(workerID)", LogKey.error: "\(error)"])
            }
            return false
        }
    }

    /// Whether this worker's own lease is current (its last heartbeat was answered less than a lease ago).
    public var isHealthy: Bool {
        let now = clock.now
        return state.withLock { s in s.lastBeat.map { now - $0 < ttl } ?? false }
    }

    /// Whether `worker` has stopped: see the type's documentation. False while it cannot be told yet.
    func hasStopped(_ worker: String) async -> Bool {
        guard worker != workerID else { return false }
        let revision: UInt64?
        do {
            revision = try await ledger.lastHeartbeat(of: worker)
        } catch {
            state.withLock { $0.seen.removeAll() }
            return false
        }
        let now = clock.now
        let ttl = self.ttl
        return state.withLock { s in
            guard let seen = s.seen[worker], seen.revision == revision else {
                s.seen[worker] = Seen(revision: revision, since: now)
                return false
            }
            // Judged only when this worker's own heartbeats were answered all along, and one was answered after the
            // whole lease had passed since the other's revision was first seen: a heartbeat still waiting for its
            // acknowledgement (a slow or paused server) proves nothing about the other worker.
            guard let healthySince = s.healthySince, let lastBeat = s.lastBeat else { return false }
            let stopped = now - seen.since > ttl && now - healthySince > ttl && lastBeat - seen.since > ttl
            if stopped, s.reported[worker] != .some(revision) {
                s.reported[worker] = .some(revision)
                logger.info(
                    "a worker stopped beating; its runs may be taken over",
                    metadata: ["ledger.worker": "\(worker)", "ledger.silent_for": "\(now - seen.since)"])
            }
            return stopped
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
