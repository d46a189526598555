import Foundation
public import LedgerCore
public import LedgerNATS
public import Logging
public import ServiceLifecycle
public import Synchronization
public import LedgerProjections

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

    public init(ledger: Ledger, store: ReadModelStore, batchSize: Int = 2000, recordsSkips: Bool = true, logger: Logger) {
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
    public static func decode(_ messages: [NATSMessage], logger: Logger) -> Batch {
        var batch = Batch()
        batch.events.reserveCapacity(messages.count)
        for message in messages {
            guard let meta = message.jetStreamMetadata else { continue }
            let sequence = meta.streamSequence
            batch.through = max(batch.through, sequence)
            switch LogAdmission.admit(subject: message.subject, payload: message.payload, messageID: message.headers["Nats-Msg-Id"]) {
            case .ignored:
                continue
            case .event(let event):
                batch.events.append((sequence, event))
            case .skipped(let reason, let fold):
                logger.warning(
                    "log message \(sequence) on \(message.subject.prefix(200)) cannot be applied to the read models; skipped and recorded: \(reason)")
                batch.skipped.append(SkippedMessage(sequence: sequence, subject: message.subject, reason: reason))
                if let fold { batch.events.append((sequence, fold)) }
            }
        }
        return batch
    }

    /// Runs until cancelled (or, with `until`, until the models reach that sequence). `onBatch` reports progress.
    public func follow(until target: UInt64? = nil, onBatch: (@Sendable (UInt64) -> Void)? = nil) async throws {
        while !Task.isCancelled {
            let start = try store.checkpoint() + 1
            if let target, start > target { return }
            var config = ConsumerConfig()
            config.name = "projector-\(UUID().uuidString.lowercased().prefix(13))"
            config.ack_policy = "none"
            config.deliver_policy = start > 1 ? "by_start_sequence" : "all"
            config.opt_start_seq = start > 1 ? start : nil
            config.inactive_threshold = 60_000_000_000
            let info: ConsumerInfo
            let subscription: JetStreamPullSubscription
            do {
                info = try await ledger.api.createConsumer(stream: ledger.stream, config)
                subscription = try JetStreamPullSubscription(connection: ledger.connection, stream: ledger.stream, consumer: info.name)
            } catch {
                logger.warning("projector could not open its reader (retrying in 1s): \(error)")
                try await Task.sleep(for: .seconds(1))
                continue
            }
            defer {
                let api = ledger.api
                let stream = ledger.stream
                Task { try? await api.deleteConsumer(stream: stream, consumer: info.name) }
            }
            var lastConsumerSequence: UInt64 = 0
            // One batch is written while the next is fetched and decoded (the writer has a thread of its own).
            var writing: Task<UInt64, any Error>?
            func finishWriting() async throws {
                if let batch = writing {
                    writing = nil
                    let through = try await batch.value  // not inside `onBatch?(...)`: that would skip it when nil
                    onBatch?(through)
                }
            }
            reading: while !Task.isCancelled {
                let messages: [NATSMessage]
                do {
                    messages = try await subscription.fetch(batch: batchSize, maxWait: .milliseconds(500))
                } catch {
                    logger.warning("projector fetch failed (reopening from the checkpoint): \(error)")
                    try await finishWriting()
                    try await Task.sleep(for: .milliseconds(200))
                    break reading
                }
                if messages.isEmpty {
                    try await finishWriting()
                    if let target, store.progress.position >= target { return }
                    continue
                }
                // A gap in the consumer's own sequence means a lost delivery: reopen from the checkpoint.
                if let first = messages.first?.jetStreamMetadata, lastConsumerSequence != 0, first.consumerSequence != lastConsumerSequence + 1 {
                    logger.warning("projector saw a gap in deliveries; reopening from the checkpoint")
                    try await finishWriting()
                    break reading
                }
                lastConsumerSequence = messages.last?.jetStreamMetadata?.consumerSequence ?? lastConsumerSequence
                // A gap inside the batch (a message missing between two delivered ones) is a lost delivery too.
                if Self.hasGap(messages) {
                    logger.warning("projector saw a gap inside a batch; reopening from the checkpoint")
                    try await finishWriting()
                    break reading
                }
                let batch = Self.decode(messages, logger: logger)
                let through = batch.through
                try await finishWriting()
                let store = self.store
                let record = self.recordsSkips
                writing = Task { [batch] in
                    let skipped = try await store.apply(batch)
                    if record, !skipped.isEmpty { self.record(skipped) }
                    return batch.through
                }
                if let target, through >= target {
                    try await finishWriting()
                    return
                }
            }
            try await finishWriting()
        }
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
                    let payload = try EventCodec().encode(event)
                    _ = try await ledger.appendForever(
                        OutgoingMessage(subject: Subjects.skipped(row.sequence), payload: payload, messageID: id, expectedLastSubjectSequence: 0))
                } catch let error as NATSError where error.isWrongLastSequence {
                    continue  // recorded before (by another process, or before a restart)
                } catch {
                    logger.warning("could not record that log message \(row.sequence) was skipped: \(error)")
                }
            }
        }
    }

    /// Whether consumer sequences inside a batch skip a number.
    static func hasGap(_ messages: [NATSMessage]) -> Bool {
        var previous: UInt64?
        for message in messages {
            guard let sequence = message.jetStreamMetadata?.consumerSequence else { continue }
            if let previous, sequence != previous + 1 { return true }
            previous = sequence
        }
        return false
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
                    self.logger.error("projector failed (\(error)); restarting from the checkpoint in \(delay)")
                    try? await Task.sleep(for: min(delay, .seconds(30)))
                }
            }
        }
    }
}
