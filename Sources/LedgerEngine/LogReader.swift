import Foundation
import LedgerNATS

/// One message of the log, as a reader sees it.
public struct LogMessage: Sendable {
    public var sequence: UInt64
    public var subject: String
    public var payload: [UInt8]
    /// The `Nats-Msg-Id` it was appended with, when it had one.
    public var messageID: String?
    /// When the server stored it (RFC 3339), where the reader learns it.
    public var time: String?

    public init(sequence: UInt64, subject: String, payload: [UInt8], messageID: String? = nil, time: String? = nil) {
        self.sequence = sequence
        self.subject = subject
        self.payload = payload
        self.messageID = messageID
        self.time = time
    }
}

/// The log read in order from a position, as an `AsyncSequence` of `LogMessage`: to its end as it is when reading
/// starts, or following it as it grows. Messages come without gaps: a lost delivery reopens the reader after the
/// last message it gave, whether a later message shows it (its consumer sequence skips one, anywhere in a batch) or
/// none does (nothing more arrives while the consumer counts more deliveries than were taken). Reading holds an ephemeral consumer on the server, deleted when the iterator goes away.
public struct LogReader: AsyncSequence, Sendable {
    public typealias Element = LogMessage

    /// Where reading stops.
    public enum End: Sendable {
        /// At the end of the log as it is when reading starts.
        case now
        /// Never: wait for new messages (`nextBatch` returns an empty batch when none came in time).
        case following
    }

    let ledger: Ledger
    let subject: String?
    let start: UInt64
    let end: End
    let batchSize: Int

    public func makeAsyncIterator() -> Iterator {
        Iterator(reader: self)
    }

    /// Reads the log through one ephemeral consumer at a time.
    public struct Iterator: AsyncIteratorProtocol {
        let reader: LogReader
        var session: Session?
        /// The sequence the next message must follow (the last one given out).
        var position: UInt64
        var buffer: [LogMessage] = []
        var index = 0
        var finished = false

        init(reader: LogReader) {
            self.reader = reader
            self.position = reader.start > 0 ? reader.start - 1 : 0
        }

        public mutating func next() async throws -> LogMessage? {
            while index >= buffer.count {
                guard let batch = try await nextBatch() else { return nil }
                buffer = batch
                index = 0
            }
            defer { index += 1 }
            return buffer[index]
        }

        /// The messages that are there (at most the reader's batch size), waiting up to `maxWait` for the first;
        /// empty when none came in time while following, nil once reading has ended.
        public mutating func nextBatch(maxWait: Duration = .milliseconds(500)) async throws -> [LogMessage]? {
            if finished { return nil }
            if session == nil {
                let opened = try await Session.open(reader.ledger, subject: reader.subject, after: position)
                if opened.pendingAtStart == 0, reader.end == .now {
                    finished = true
                    return nil
                }
                session = opened
            }
            guard let session else { return nil }
            let wait = reader.end == .now ? Swift.max(maxWait, .seconds(2)) : maxWait
            let delivered = try await session.subscription.fetch(batch: reader.batchSize, maxWait: wait)
            if delivered.isEmpty {
                // Nothing came in time. When the consumer has delivered more than arrived here, the last deliveries
                // were lost on the way (no later message shows the jump): read again after the last one given out.
                if try await session.deliveredMoreThanTaken() {
                    self.session = nil
                    return []
                }
                if reader.end == .now { finished = true }
                return reader.end == .now ? nil : []
            }
            let lose = reader.ledger.failpoints.loseDelivery
            var out: [LogMessage] = []
            out.reserveCapacity(delivered.count)
            for message in delivered {
                guard let meta = try LogReader.place(message) else { continue }
                if let lose, lose(meta.streamSequence) { continue }
                // Each message is checked, wherever it sits in the batch: the consumer numbers its deliveries
                // 1, 2, 3..., so one that skips a number follows a lost delivery; reopen after the last message
                // given out. (The stream sequence may skip on its own: a message deleted from the log is no gap.)
                if meta.consumerSequence != session.consumerSequence + 1 {
                    self.session = nil
                    return out
                }
                session.consumerSequence = meta.consumerSequence
                position = meta.streamSequence
                out.append(
                    LogMessage(
                        sequence: meta.streamSequence, subject: message.subject, payload: message.payload,
                        messageID: message.headers["Nats-Msg-Id"]))
                if meta.numPending == 0, reader.end == .now {
                    finished = true
                    break
                }
            }
            return out
        }
    }

    /// Where a delivered message sits in the log: nil for a message that is no delivery of the log (published to
    /// the reader's inbox by someone else: its reply is no JetStream acknowledgement subject), which is left out. A
    /// delivery whose acknowledgement subject cannot be read is thrown, not skipped: skipping it would leave a gap
    /// in the consumer's numbering, the reader would open again where it was, and meet the same message forever.
    static func place(_ message: NATSMessage) throws -> JetStreamMetadata? {
        if let meta = message.jetStreamMetadata { return meta }
        guard let reply = message.reply, reply.hasPrefix("$JS.ACK.") else { return nil }
        throw NATSError(
            message:
                "nats-server delivered a message of the log (subject \(message.subject)) whose acknowledgement subject Ledgerflow cannot read: \(reply.prefix(200)); the log cannot be read past it. Run a nats-server this version knows (2.10 to 2.15), or a Ledgerflow that knows this server"
        )
    }

    /// One ephemeral consumer and its pull subscription; the consumer is deleted when the session goes away.
    final class Session: @unchecked Sendable {
        let subscription: JetStreamPullSubscription
        let api: JetStreamAPI
        let stream: String
        let consumer: String
        let pendingAtStart: UInt64
        /// The consumer sequence of the last message taken (touched by the iterator only).
        var consumerSequence: UInt64 = 0

        init(
            subscription: JetStreamPullSubscription, api: JetStreamAPI, stream: String, consumer: String,
            pending: UInt64
        ) {
            self.subscription = subscription
            self.api = api
            self.stream = stream
            self.consumer = consumer
            self.pendingAtStart = pending
        }

        /// Whether the server counts more deliveries on this consumer than the reader has taken (or the consumer
        /// is gone): either way, reading must start again after the last message given out.
        func deliveredMoreThanTaken() async throws -> Bool {
            do {
                let info = try await api.consumerInfo(stream: stream, consumer: consumer)
                return info.delivered.consumer_seq > consumerSequence
            } catch let error as NATSError where error.jetStreamError == .consumerNotFound {
                return true
            }
        }

        static func open(_ ledger: Ledger, subject: String?, after position: UInt64) async throws -> Session {
            var config = ConsumerConfig()
            config.name = "read-\(UUID().uuidString.lowercased().prefix(13))"
            config.ack_policy = "none"
            config.deliver_policy = position > 0 ? "by_start_sequence" : "all"
            config.opt_start_seq = position > 0 ? position + 1 : nil
            config.filter_subject = subject
            config.inactive_threshold = 60_000_000_000
            let info = try await ledger.api.createConsumer(stream: ledger.stream, config)
            do {
                let subscription = try JetStreamPullSubscription(
                    connection: ledger.connection, stream: ledger.stream, consumer: info.name)
                return Session(
                    subscription: subscription, api: ledger.api, stream: ledger.stream, consumer: info.name,
                    pending: info.num_pending)
            } catch {
                try? await ledger.api.deleteConsumer(stream: ledger.stream, consumer: info.name)
                throw error
            }
        }

        deinit {
            let api = self.api
            let stream = self.stream
            let consumer = self.consumer
            // Not awaited: the server also drops the consumer after its inactivity threshold.
            Task { try? await api.deleteConsumer(stream: stream, consumer: consumer) }
        }
    }
}

extension Ledger {
    /// The log from `start` on (only `subject`, wildcards allowed, when given), in order.
    public func messages(
        subject: String? = nil, from start: UInt64 = 1, until end: LogReader.End = .now, batchSize: Int = 1000
    )
        -> LogReader
    {
        LogReader(ledger: self, subject: subject, start: max(start, 1), end: end, batchSize: max(1, batchSize))
    }

    /// Every message from `start` to the end of the log as it is now (`subject` only, when given).
    public func read(subject: String?, from start: UInt64 = 1, limit: Int = .max) async throws -> [LogMessage] {
        var out: [LogMessage] = []
        for try await message in messages(subject: subject, from: start) {
            out.append(message)
            if out.count >= limit { break }
        }
        return out
    }
}
