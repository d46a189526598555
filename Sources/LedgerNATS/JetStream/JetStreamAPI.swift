import Foundation

/// The JetStream JSON API (`$JS.API.*`) spoken directly, so that server features newer than the C client's structs
/// (multiple filter subjects, compression, metadata) are reachable, and the server's own error text comes back.
public struct JetStreamAPI: Sendable {
    public let connection: NATSConnection
    public var timeout: Duration

    public init(connection: NATSConnection, timeout: Duration = .seconds(5)) {
        self.connection = connection
        self.timeout = timeout
    }

    struct APIError: Decodable {
        var code: Int
        var err_code: Int?
        var description: String?
    }

    struct ErrorEnvelope: Decodable {
        var error: APIError?
    }

    /// Sends one API request and decodes its answer, turning the server's `error` object into a `NATSError`.
    public func call<Response: Decodable>(
        _ subject: String, body: some Encodable, as: Response.Type
    ) async throws
        -> Response
    {
        let payload = try Array(JSONEncoder().encode(body))
        return try await call(subject, payload: payload, as: Response.self)
    }

    /// The server's answer as bytes, after checking it is not an error (for requests that must keep fields
    /// Ledgerflow does not model).
    public func callRaw(_ subject: String, payload: [UInt8] = []) async throws -> [UInt8] {
        let reply = try await request(subject, payload: payload)
        if let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(reply)), let error = envelope.error {
            throw NATSError(
                jetStreamCode: error.err_code ?? 0,
                message: "\(subject): \(error.description ?? "JetStream error \(error.code)")")
        }
        return reply
    }

    func request(_ subject: String, payload: [UInt8]) async throws -> [UInt8] {
        do {
            return try await connection.request(subject: "$JS.API.\(subject)", payload: payload, timeout: timeout)
                .payload
        } catch let error as NATSError where !connection.isConnected {
            throw NATSError(
                status: error.status,
                message:
                    "NATS at \(connection.url) is not reachable right now (reconnecting; \(error.message)); try again shortly"
            )
        } catch let error as NATSError where error.isNoResponders || error.message.contains("no service") {
            throw NATSError(
                status: error.status,
                message: "JetStream is not enabled on the server at \(connection.url) (start nats-server with -js)")
        }
    }

    public func call<Response: Decodable>(
        _ subject: String, payload: [UInt8] = [], as: Response.Type
    ) async throws
        -> Response
    {
        let data = Data(try await request(subject, payload: payload))
        if let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: data), let error = envelope.error {
            throw NATSError(
                jetStreamCode: error.err_code ?? 0,
                message: "\(subject): \(error.description ?? "JetStream error \(error.code)")")
        }
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw NATSError(
                message: "\(subject): unexpected answer from the server: \(String(decoding: data, as: UTF8.self))")
        }
    }

    /// `$JS.API.INFO`: the account's JetStream usage and the server's API level (absent before 2.10).
    public func accountInfo() async throws -> AccountInfo {
        try await call("INFO", as: AccountInfo.self)
    }

    /// Creates the stream, or updates it to `config` when it exists.
    @discardableResult
    public func createOrUpdateStream(_ config: StreamConfig) async throws -> StreamInfo {
        do {
            return try await call("STREAM.CREATE.\(config.name)", body: config, as: StreamInfo.self)
        } catch let error as NATSError where error.jetStreamError == .streamNameInUse {
            return try await call("STREAM.UPDATE.\(config.name)", body: config, as: StreamInfo.self)
        }
    }

    public func streamInfo(_ name: String) async throws -> StreamInfo {
        try await call("STREAM.INFO.\(name)", as: StreamInfo.self)
    }

    /// The stream's info with the list of its deleted sequences (`state.deleted`).
    public func streamInfoWithDeleted(_ name: String) async throws -> StreamInfo {
        struct Request: Encodable { var deleted_details = true }
        return try await call("STREAM.INFO.\(name)", body: Request(), as: StreamInfo.self)
    }

    /// Deletes the message at `sequence` from the stream (`$JS.API.STREAM.MSG.DELETE`); false when there was none.
    @discardableResult
    public func deleteMessage(stream: String, sequence: UInt64) async throws -> Bool {
        struct Request: Encodable { var seq: UInt64 }
        do {
            return try await call("STREAM.MSG.DELETE.\(stream)", body: Request(seq: sequence), as: SuccessResponse.self)
                .success ?? false
        } catch let error as NATSError where error.jetStreamError == .noMessageFound {
            return false
        }
    }

    public func deleteStream(_ name: String) async throws {
        _ = try await call("STREAM.DELETE.\(name)", as: SuccessResponse.self)
    }

    /// Creates (or updates) a consumer; a durable one when `config.durableName` is set.
    @discardableResult
    public func createConsumer(stream: String, _ config: ConsumerConfig) async throws -> ConsumerInfo {
        let request = CreateConsumerRequest(stream_name: stream, config: config)
        if let name = config.durable_name ?? config.name {
            return try await call("CONSUMER.CREATE.\(stream).\(name)", body: request, as: ConsumerInfo.self)
        }
        return try await call("CONSUMER.CREATE.\(stream)", body: request, as: ConsumerInfo.self)
    }

    public func consumerInfo(stream: String, consumer: String) async throws -> ConsumerInfo {
        try await call("CONSUMER.INFO.\(stream).\(consumer)", as: ConsumerInfo.self)
    }

    public func deleteConsumer(stream: String, consumer: String) async throws {
        _ = try await call("CONSUMER.DELETE.\(stream).\(consumer)", as: SuccessResponse.self)
    }

    /// The last message stored on `subject` (`$JS.API.STREAM.MSG.GET`), or nil when there is none.
    public func lastMessage(stream: String, subject: String) async throws -> StoredMessage? {
        struct Request: Encodable { var last_by_subj: String }
        do {
            return try await call(
                "STREAM.MSG.GET.\(stream)", body: Request(last_by_subj: subject), as: GetMessageResponse.self
            )
            .message
        } catch let error as NATSError where error.jetStreamError == .noMessageFound {
            return nil
        }
    }

    /// The first message stored on `subject`, or nil when there is none.
    public func firstMessage(stream: String, subject: String) async throws -> StoredMessage? {
        struct Request: Encodable {
            var seq: UInt64
            var next_by_subj: String
        }
        do {
            return try await call(
                "STREAM.MSG.GET.\(stream)", body: Request(seq: 1, next_by_subj: subject), as: GetMessageResponse.self
            ).message
        } catch let error as NATSError where error.jetStreamError == .noMessageFound {
            return nil
        }
    }

    /// The message at `sequence`, or nil when it does not exist.
    public func message(stream: String, sequence: UInt64) async throws -> StoredMessage? {
        struct Request: Encodable { var seq: UInt64 }
        do {
            return try await call("STREAM.MSG.GET.\(stream)", body: Request(seq: sequence), as: GetMessageResponse.self)
                .message
        } catch let error as NATSError where error.jetStreamError == .noMessageFound {
            return nil
        }
    }
}

public struct SuccessResponse: Decodable, Sendable {
    public var success: Bool?
}

public struct AccountInfo: Decodable, Sendable {
    public struct API: Decodable, Sendable {
        public var level: Int?
    }
    public var api: API?
    public var streams: Int?
    public var consumers: Int?
    /// The JetStream API level: 0 before nats-server 2.10 (which did not report one).
    public var apiLevel: Int { api?.level ?? 0 }
}

/// The subset of a stream's configuration Ledgerflow sets (field names as the server spells them).
public struct StreamConfig: Codable, Sendable, Equatable {
    public var name: String
    public var subjects: [String]
    public var retention: String = "limits"
    public var storage: String = "file"
    public var discard: String = "old"
    public var max_msgs: Int64 = -1
    public var max_bytes: Int64 = -1
    public var max_age: Int64 = 0
    public var max_msg_size: Int32 = -1
    public var num_replicas: Int = 1
    /// Nanoseconds in which a repeated `Nats-Msg-Id` is dropped.
    public var duplicate_window: Int64 = 120_000_000_000
    public var allow_direct: Bool = true
    /// Atomic batches of appends (nats-server 2.12+, JetStream API level 2); nil leaves it out (older servers).
    public var allow_atomic: Bool?
    public var description: String?

    public init(name: String, subjects: [String]) {
        self.name = name
        self.subjects = subjects
    }
}

public struct StreamState: Decodable, Sendable {
    public var messages: UInt64
    public var bytes: UInt64
    public var first_seq: UInt64
    public var last_seq: UInt64
    /// How many sequences between the first and the last have no message (deleted).
    public var num_deleted: Int?
    /// Those sequences, when asked for (`streamInfoWithDeleted`).
    public var deleted: [UInt64]?
}

public struct StreamInfo: Decodable, Sendable {
    public var config: StreamConfig
    public var state: StreamState
}

/// The subset of a consumer's configuration Ledgerflow sets.
public struct ConsumerConfig: Codable, Sendable {
    public var name: String?
    public var durable_name: String?
    public var description: String?
    public var deliver_policy: String = "all"
    public var opt_start_seq: UInt64?
    public var ack_policy: String = "explicit"
    public var ack_wait: Int64?
    public var max_deliver: Int?
    public var max_ack_pending: Int?
    public var filter_subject: String?
    /// nats-server 2.10+; older servers ignore it (and then deliver every subject).
    public var filter_subjects: [String]?
    public var inactive_threshold: Int64?
    public var max_waiting: Int?
    public var mem_storage: Bool?
    public var num_replicas: Int?
    public var backoff: [Int64]?

    public init() {}
}

struct CreateConsumerRequest: Encodable {
    var stream_name: String
    var config: ConsumerConfig
}

public struct ConsumerInfo: Decodable, Sendable {
    public struct SequenceInfo: Decodable, Sendable {
        public var consumer_seq: UInt64
        public var stream_seq: UInt64
    }
    public var name: String
    public var config: ConsumerConfig
    public var num_pending: UInt64
    public var num_ack_pending: Int
    public var delivered: SequenceInfo
    public var ack_floor: SequenceInfo
}

/// A message read by sequence or by subject through the stream API.
public struct StoredMessage: Decodable, Sendable {
    public var subject: String
    public var seq: UInt64
    /// Base64 of the payload, as the server sends it.
    public var data: String?
    public var time: String
    public var payload: [UInt8] { data.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? [] }
}

struct GetMessageResponse: Decodable {
    var message: StoredMessage
}
