import Foundation
public import LedgerCore
import LedgerNATS
public import LedgerProjections
public import Logging
public import ServiceLifecycle
public import Synchronization

/// Reads the log from the read models' checkpoint and applies it to LMDB in batches, each batch in one write
/// transaction with its checkpoint.
public final class Projector: Service, Sendable {
    public let ledger: Ledger
    public let store: ReadModelStore
    let logger: Logger
    let batchSize: Int
    /// Times the projection failed and was restarted (for metrics).
    public let failures = Atomic<Int>(0)
    /// Whether skipped messages are also recorded as events in the log (the live projector; rebuilds only read).
    let recordsSkips: Bool

    public init(ledger: Ledger, store: ReadModelStore, batchSize: Int = 2000, recordsSkips: Bool = true, logger: Logger)
    {
        self.ledger = ledger
        self.store = store
        self.recordsSkips = recordsSkips
        self.batchSize = batchSize
        self.logger = logger
    }

    /// A batch read from the log: the events to fold, the messages skipped (with the reason), and the stream
    /// sequence of its last message.
    public struct Batch: Sendable {
        public var events: [(sequence: UInt64, event: LedgerEvent)] = []
        public var skipped: [SkippedMessage] = []
        public var through: UInt64 = 0
    }

    /// Reads the engine's own events of a batch (other subjects are only counted), each decoded once; what cannot
    /// be applied is skipped and recorded, never allowed to stop the projection (see `LogAdmission`).
    public static func decode(_ messages: [LogMessage], logger: Logger) -> Batch {
        var batch = Batch()
        batch.events.reserveCapacity(messages.count)
        for message in messages {
            let sequence = message.sequence
            batch.through = max(batch.through, sequence)
            switch LogAdmission.admit(subject: message.subject, payload: message.payload, messageID: message.messageID)
            {
            case .ignored:
                continue
            case .event(let event):
                batch.events.append((sequence, event))
            case .skipped(let reason, let fold):
                logger.warning(
                    "log message cannot be applied to the read models; skipped and recorded",
                    metadata: [
                        LogKey.sequence: "\(sequence)", LogKey.subject: "\(message.subject.prefix(200))",
                        LogKey.error: "\(reason)",
                    ])
                batch.skipped.append(SkippedMessage(sequence: sequence, subject: message.subject, reason: reason))
                if let fold { batch.events.append((sequence, fold)) }
            }
        }
        return batch
    }

    /// Runs until cancelled (or, with `until`, until the models reach that sequence, applying nothing past it).
    /// `onBatch` reports progress.
    /// A read that fails (NATS away) starts again from the checkpoint; a write that fails is thrown.
    public func follow(until target: UInt64? = nil, onBatch: (@Sendable (UInt64) -> Void)? = nil) async throws {
        // Models written before this version's index tables have them derived before anything is read.
        for row in try await store.upgradeIndexes() {
            logger.error("\(ReadModelStore.UnreadableState.logMessage)", metadata: [LogKey.error: "\(row)"])
        }
        while !Task.isCancelled {
            do {
                if try await follow(from: try store.checkpoint() + 1, until: target, onBatch: onBatch) { return }
            } catch let error as NATSError {
                logger.warning(
                    "projector could not read the log; reopening from the checkpoint",
                    metadata: [LogKey.error: "\(error)"])
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Reads from `start` and writes batch after batch; true once `target` is reached.
    func follow(from start: UInt64, until target: UInt64?, onBatch: (@Sendable (UInt64) -> Void)?) async throws -> Bool
    {
        if let target, start > target { return true }
        var reader = ledger.messages(from: start, until: .following, batchSize: batchSize).makeAsyncIterator()
        // One batch is written while the next is fetched and decoded (the writer has a thread of its own).
        var writing: Task<UInt64, any Error>?
        func finishWriting() async throws {
            if let batch = writing {
                writing = nil
                let through = try await batch.value  // not inside `onBatch?(...)`: that would skip it when nil
                onBatch?(through)
            }
        }
        do {
            while !Task.isCancelled {
                guard var messages = try await reader.nextBatch(maxWait: .milliseconds(500)) else { break }
                // With a target, nothing past it is applied: the models then stand exactly at it (a rebuild compared
                // with live models taken at that checkpoint, while the log goes on growing).
                if let target, let last = messages.last, last.sequence > target {
                    messages = messages.filter { $0.sequence <= target }
                    if messages.isEmpty {
                        try await finishWriting()
                        return true
                    }
                }
                if messages.isEmpty {
                    try await finishWriting()
                    if let target, store.progress.position >= target { return true }
                    continue
                }
                let batch = Self.decode(messages, logger: logger)
                let through = batch.through
                try await finishWriting()
                let store = self.store
                let record = self.recordsSkips
                writing = Task { [batch] in
                    let skipped = try await store.apply(batch)
                    store.notifyApplied(batch)
                    if record, !skipped.isEmpty { self.record(skipped) }
                    return batch.through
                }
                if let target, through >= target {
                    try await finishWriting()
                    return true
                }
            }
        } catch let error as NATSError {
            // What was read before the failure is written before reading again.
            try await finishWriting()
            throw error
        }
        try await finishWriting()
        return false
    }
}

extension Projector {
    /// Records each skipped message once in the log, as `LogMessageSkipped` on `ledger.skipped.<sequence>`: the
    /// subject must be empty, so however many processes (or rebuilds) skip it, one record is kept.
    func record(_ skipped: [SkippedMessage]) {
        let ledger = self.ledger
        let logger = self.logger
        Task {
            for row in skipped {
                let id = "skipped-\(row.sequence)"
                let event = CloudEvent(id: id, type: EventType.logMessageSkipped, data: row)
                do {
                    try await ledger.send(
                        event, on: Subjects.skipped(row.sequence), expectingEmptySubject: true, retry: .untilAnswered)
                } catch let error as NATSError where error.isWrongLastSequence {
                    continue  // recorded before (by another process, or before a restart)
                } catch {
                    logger.warning(
                        "could not record that a log message was skipped",
                        metadata: [LogKey.sequence: "\(row.sequence)", LogKey.error: "\(error)"])
                }
            }
        }
    }

    /// Follows the log until graceful shutdown. A failure (NATS away, a write LMDB refused) restarts the projection
    /// from the checkpoint after a backoff; it never stops the process.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                do {
                    try await self.follow()
                    return
                } catch is CancellationError {
                    return
                } catch {
                    failures += 1
                    self.failures.add(1, ordering: .relaxed)
                    let delay = Duration.milliseconds(250 * (1 << min(failures - 1, 7)))
                    self.logger.error(
                        "projector failed; restarting from the checkpoint",
                        metadata: [LogKey.error: "\(error)", LogKey.delay: "\(delay)"])
                    try? await Task.sleep(for: min(delay, .seconds(30)))
                }
            }
        }
    }
}
