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
    /// The version of the shape of `data` (an extension attribute, `EventSchema`); absent means 1.
    public var schemaversion: Int?
    /// `sha256:<hex>` of the stored bytes of the previous message on the same run's or flow's subject (an extension
    /// attribute, `EventChain`); absent on a subject's first event and in logs written before the chain existed.
    public var prevhash: String?
    public var data: Payload

    /// An event as Ledgerflow writes it: `schemaversion` is the current version of `type` unless given.
    public init(
        id: String = EventID.make(), source: String = LedgerSource.engine, type: String, time: String = Timestamp.now(),
        runid: String? = nil, flowid: String? = nil, flowversion: Int? = nil, stepid: String? = nil,
        correlationid: String? = nil, causationid: String? = nil, traceparent: String? = nil, schemaversion: Int? = nil,
        prevhash: String? = nil, data: Payload
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
        self.schemaversion = schemaversion ?? EventSchema.currentVersion(of: type)
        self.prevhash = prevhash
        self.data = data
    }
}

/// The `source` attributes Ledgerflow writes.
public enum LedgerSource {
    public static let engine = "ledgerflow/engine"
    public static let api = "ledgerflow/api"
    public static let calendarSimulator = "ledgerflow/calendar-simulator"
    public static let discoverySimulator = "ledgerflow/discovery-simulator"
    public static let notificationSimulator = "ledgerflow/notification-simulator"
    public static let cli = "ledgerflow/cli"
}

/// Encodes and decodes events: by hand (`JSONWritable`, `JSONReadable`) for every type that is coded so, which is
/// every event of the log and every message the engine sends; through Foundation's coders for anything else (the
/// bytes are the same: compact, sorted keys, slashes unescaped). Not shared across threads.
public struct EventCodec {
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

    public init() {
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        decoder = JSONDecoder()
    }

    public func encode<P>(_ event: CloudEvent<P>) throws -> [UInt8] {
        EventCoding.countEncoded()
        if let writable = event as? any JSONWritable { return writable.jsonBytes }
        return try Array(encoder.encode(event))
    }

    public func encode(_ value: some Encodable) throws -> [UInt8] {
        if let writable = value as? any JSONWritable { return writable.jsonBytes }
        return try Array(encoder.encode(value))
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        if let readable = T.self as? any JSONReadable.Type { return try readable.init(jsonBytes: bytes) as! T }
        return try decoder.decode(T.self, from: Data(bytes))
    }

    public func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        if let readable = T.self as? any JSONReadable.Type { return try readable.init(jsonBytes: data) as! T }
        return try decoder.decode(T.self, from: data)
    }
}

/// Why an inbound message was refused, in words a person can act on.
public struct EnvelopeProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// An inbound document read leniently, so that every missing piece can be named.
struct LenientEnvelope {
    var specversion: String?
    var id: String?
    var source: String?
    var type: String?
    var time: String?
    var datacontenttype: String?
    var subject: String?
    var runid: String?
    var flowid: String?
    var correlationid: String?
    var causationid: String?
    var traceparent: String?
    var data: JSONValue?

    /// The attributes as strings (a wrong type is named by `JSONShapeError`'s path); `data` as it is.
    init(_ document: JSONValue) throws(JSONShapeError) {
        let f = try JSONFields(document)
        specversion = try f.optionalString("specversion")
        id = try f.optionalString("id")
        source = try f.optionalString("source")
        type = try f.optionalString("type")
        time = try f.optionalString("time")
        datacontenttype = try f.optionalString("datacontenttype")
        subject = try f.optionalString("subject")
        runid = try f.optionalString("runid")
        flowid = try f.optionalString("flowid")
        correlationid = try f.optionalString("correlationid")
        causationid = try f.optionalString("causationid")
        traceparent = try f.optionalString("traceparent")
        data = try f.optional("data")
    }
}

/// Reads an inbound message as a CloudEvents 1.0 document (one JSON parse) and checks that its type is one of
/// `expectedTypes` (any type when nil) and that `data` has every path in `required`. Enforces the inbound limits: at most
/// `Limits.inboundMessageBytes`, JSON nested at most `Limits.inboundJSONDepth` deep, attributes at most
/// `Limits.identifierBytes` long. Every refusal says what was wrong and what to do. A `traceparent` is never a
/// reason to refuse a message: one that is malformed or too long is ignored by whoever reads it (`TraceParent`).
public func decodeInbound(
    _ bytes: [UInt8], expectedTypes: [String]?, required: [String] = [], codec: EventCodec
) -> Result<CloudEvent<JSONValue>, EnvelopeProblem> {
    guard bytes.count <= Limits.inboundMessageBytes else {
        return .failure(
            EnvelopeProblem(
                "the message is \(bytes.count) bytes; inbound messages may be at most \(Limits.inboundMessageBytes) bytes (send less data, or a reference to it)"
            ))
    }
    let envelope: LenientEnvelope
    EventCoding.countDecoded()
    do {
        envelope = try LenientEnvelope(try JSONTree.parse(bytes, maxDepth: Limits.inboundJSONDepth))
    } catch let error as JSONShapeError where error.path.isEmpty {
        return .failure(
            EnvelopeProblem("the message is JSON but not an object; send a CloudEvents 1.0 document (a JSON object)"))
    } catch let error as JSONShapeError {
        return .failure(
            EnvelopeProblem(
                "attribute \(error.path.joined(separator: ".")) has the wrong type; CloudEvents attributes are strings"
            ))
    } catch let error as JSONTree.ParseError {
        return .failure(
            EnvelopeProblem(
                "the message (\(bytes.count) bytes) is not valid JSON: \(error.message) at byte \(error.offset); send a CloudEvents 1.0 JSON document"
            ))
    } catch {
        return .failure(EnvelopeProblem("the message is not valid JSON (\(bytes.count) bytes): \(error)"))
    }
    let attributes: [(String, String?)] = [
        ("specversion", envelope.specversion), ("id", envelope.id), ("source", envelope.source),
        ("type", envelope.type),
        ("time", envelope.time), ("datacontenttype", envelope.datacontenttype), ("subject", envelope.subject),
        ("runid", envelope.runid), ("flowid", envelope.flowid), ("correlationid", envelope.correlationid),
        ("causationid", envelope.causationid),
    ]
    for (name, value) in attributes {
        if let value, value.utf8.count > Limits.identifierBytes {
            return .failure(
                EnvelopeProblem(
                    "attribute \(name) is \(value.utf8.count) bytes long; CloudEvents attributes may be at most \(Limits.identifierBytes) bytes (shorten it)"
                ))
        }
    }
    var missing: [String] = []
    if envelope.specversion?.isEmpty ?? true { missing.append("specversion") }
    if envelope.id?.isEmpty ?? true { missing.append("id") }
    if envelope.source?.isEmpty ?? true { missing.append("source") }
    if envelope.type?.isEmpty ?? true { missing.append("type") }
    if !missing.isEmpty {
        return .failure(EnvelopeProblem("missing CloudEvents attribute(s): \(missing.joined(separator: ", "))"))
    }
    if envelope.specversion != "1.0" {
        return .failure(EnvelopeProblem("specversion must be \"1.0\", got \"\(envelope.specversion ?? "")\""))
    }
    let type = envelope.type!
    if let expectedTypes, !expectedTypes.contains(type) {
        return .failure(
            EnvelopeProblem(
                "unknown event type \"\(type)\": nothing here handles it (the types handled are \(expectedTypes.joined(separator: ", "))); publish it with one of those types, or to the service that handles it"
            ))
    }
    let data = envelope.data ?? .null
    let absent = required.filter { data[path: $0] == nil || data[path: $0] == .null }
    if !absent.isEmpty {
        return .failure(EnvelopeProblem("\(type) is missing data field(s): \(absent.joined(separator: ", "))"))
    }
    var event = CloudEvent(
        id: envelope.id!, source: envelope.source!, type: type, time: envelope.time ?? "", data: data)
    event.time = envelope.time
    event.datacontenttype = envelope.datacontenttype
    event.subject = envelope.subject
    event.runid = envelope.runid
    event.flowid = envelope.flowid
    event.correlationid = envelope.correlationid
    event.causationid = envelope.causationid
    event.traceparent = envelope.traceparent
    event.schemaversion = nil  // other services' events: Ledgerflow does not version their shapes
    return .success(event)
}
