import Foundation
public import LedgerCore
public import LedgerNATS
public import Logging
public import ServiceLifecycle

/// Reads the log from the read models' checkpoint and applies it to LMDB in batches, each batch in one write
/// transaction with its checkpoint.
public final class Projector: Service, Sendable {
    public let ledger: Ledger
    public let store: ReadModelStore
    let logger: Logger
    let batchSize: Int

    public init(ledger: Ledger, store: ReadModelStore, batchSize: Int = 2000, logger: Logger) {
        self.ledger = ledger
        self.store = store
        self.batchSize = batchSize
        self.logger = logger
    }

    /// Decodes the engine's own events of a batch (other subjects are only counted), once each.
    public static func decode(_ messages: [NATSMessage], logger: Logger) -> (events: [(sequence: UInt64, event: LedgerEvent)], through: UInt64) {
        var events: [(sequence: UInt64, event: LedgerEvent)] = []
        events.reserveCapacity(messages.count)
        var through: UInt64 = 0
        for message in messages {
            guard let meta = message.jetStreamMetadata else { continue }
            through = max(through, meta.streamSequence)
            guard message.subject.hasPrefix("ledger.") else { continue }
            do {
                events.append((meta.streamSequence, try JSONTree.decode(LedgerEvent.self, from: message.payload)))
            } catch {
                logger.warning("log message \(meta.streamSequence) on \(message.subject) is not a readable event; the read models skip it: \(error)")
            }
        }
        return (events, through)
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
                let (events, through) = Self.decode(messages, logger: logger)
                try await finishWriting()
                let store = self.store
                writing = Task { [events] in
                    try await store.apply(events, through: through)
                    return through
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
    /// Follows the log until graceful shutdown.
    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await self.follow()
        }
    }
}
