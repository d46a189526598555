public import Foundation

/// A CloudEvents 1.0 structured-mode JSON document with a typed `data`.
public struct CloudEvent<Payload: Codable & Sendable>: Codable, Sendable {
    public var specversion: String
    public var id: String
    public var source: String
    public var type: String
    public var time: String?
    public var datacontenttype: String?
    public var subject: String?
    public var runid: String?
    public var flowid: String?
    public var flowversion: Int?
    public var stepid: String?
    public var correlationid: String?
    public var causationid: String?
    public var traceparent: String?
    public var data: Payload

    public init(
        id: String = EventID.make(), source: String = LedgerSource.engine, type: String, time: String = Timestamp.now(),
        runid: String? = nil, flowid: String? = nil, flowversion: Int? = nil, stepid: String? = nil,
        correlationid: String? = nil, causationid: String? = nil, traceparent: String? = nil, data: Payload
    ) {
        self.specversion = "1.0"
        self.id = id
        self.source = source
        self.type = type
        self.time = time
        self.datacontenttype = "application/json"
        self.runid = runid
        self.flowid = flowid
        self.flowversion = flowversion
        self.stepid = stepid
        self.correlationid = correlationid
        self.causationid = causationid
        self.traceparent = traceparent
        self.data = data
    }
}

/// The `source` attributes Ledgerflow writes.
public enum LedgerSource {
    public static let engine = "ledgerflow/engine"
    public static let api = "ledgerflow/api"
    public static let calendarSimulator = "ledgerflow/calendar-simulator"
    public static let discoverySimulator = "ledgerflow/discovery-simulator"
    public static let cli = "ledgerflow/cli"
}

/// Encodes and decodes events. One encoder/decoder per instance; not shared across threads.
public struct EventCodec {
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

    public init() {
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        decoder = JSONDecoder()
    }

    public func encode<P>(_ event: CloudEvent<P>) throws -> [UInt8] {
        try Array(encoder.encode(event))
    }

    public func encode(_ value: some Encodable) throws -> [UInt8] {
        try Array(encoder.encode(value))
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try decoder.decode(T.self, from: Data(bytes))
    }

    public func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try decoder.decode(T.self, from: data)
    }
}

/// Why an inbound message was refused, in words a person can act on.
public struct EnvelopeProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Checks an inbound document against CloudEvents 1.0 and decodes its `data` as `Payload`.
public func decodeInbound<Payload: Codable & Sendable>(
    _ bytes: [UInt8], as: Payload.Type, expectedType: String, codec: EventCodec
) -> Result<CloudEvent<Payload>, EnvelopeProblem> {
    let object: Any
    do {
        object = try JSONSerialization.jsonObject(with: Data(bytes))
    } catch {
        return .failure(EnvelopeProblem("the message is not valid JSON (\(bytes.count) bytes)"))
    }
    guard let dict = object as? [String: Any] else {
        return .failure(EnvelopeProblem("the message is JSON but not an object; a CloudEvents 1.0 document is expected"))
    }
    var missing: [String] = []
    for key in ["specversion", "id", "source", "type"] where (dict[key] as? String)?.isEmpty ?? true {
        missing.append(key)
    }
    if !missing.isEmpty {
        return .failure(EnvelopeProblem("missing CloudEvents attribute(s): \(missing.joined(separator: ", "))"))
    }
    if dict["specversion"] as? String != "1.0" {
        return .failure(EnvelopeProblem("specversion must be \"1.0\", got \"\(dict["specversion"] as? String ?? "")\""))
    }
    let type = dict["type"] as! String
    if type != expectedType {
        return .failure(EnvelopeProblem("unknown event type \"\(type)\" on this subject (expected \(expectedType))"))
    }
    do {
        return .success(try codec.decode(CloudEvent<Payload>.self, from: bytes))
    } catch let DecodingError.keyNotFound(key, context) {
        let path = (context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
        return .failure(EnvelopeProblem("missing required field \(path)"))
    } catch let DecodingError.typeMismatch(_, context) {
        return .failure(EnvelopeProblem("field \(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type"))
    } catch let DecodingError.valueNotFound(_, context) {
        return .failure(EnvelopeProblem("field \(context.codingPath.map(\.stringValue).joined(separator: ".")) is null"))
    } catch {
        return .failure(EnvelopeProblem("the message could not be decoded: \(error)"))
    }
}
