/// Any JSON value, for the parts of events and definitions whose shape the user decides.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The value at a dotted path (`entities.title`, `items.0.id`), or nil when any part is missing.
    public subscript(path path: some StringProtocol) -> JSONValue? {
        var current = self
        // Part by part, as `split(separator: ".")` would give them, without building the array of parts.
        var rest = path[...]
        while true {
            let end = rest.firstIndex(of: ".") ?? rest.endIndex
            guard let next = current.child(rest[..<end]) else { return nil }
            current = next
            guard end < rest.endIndex else { return current }
            rest = rest[rest.index(after: end)...]
        }
    }

    /// The member named `part` of an object, or the element at index `part` of an array.
    func child(_ part: some StringProtocol) -> JSONValue? {
        switch self {
        case .object(let object): return object[String(part)]
        case .array(let array):
            guard let index = Int(part), array.indices.contains(index) else { return nil }
            return array[index]
        default: return nil
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var numberValue: Double? {
        if case .number(let n) = self { return n }
        return nil
    }

    /// JSON truthiness as conditions use it: null, false, 0, "" and empty collections are false.
    public var isTruthy: Bool {
        switch self {
        case .null: return false
        case .bool(let b): return b
        case .number(let n): return n != 0
        case .string(let s): return !s.isEmpty && s != "false"
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.isEmpty
        }
    }

    /// The value as text inside an interpolated template: strings bare, everything else as compact JSON.
    public var interpolated: String {
        switch self {
        case .string(let s): return s
        case .null: return ""
        default: return compactJSON
        }
    }

    /// Compact JSON text with sorted keys (deterministic): `JSONWriter`'s bytes.
    public var compactJSON: String { String(decoding: jsonBytes, as: UTF8.self) }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let tree = decoder as? TreeDecoder {
            self = tree.value
            return
        }
        // The decoder offers no way to ask a value's kind, and every wrong guess throws (costly): guess in the
        // order values are common in events, strings and objects first.
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let keyed = try? decoder.container(keyedBy: AnyCodingKey.self) {
            var object: [String: JSONValue] = [:]
            object.reserveCapacity(keyed.allKeys.count)
            for key in keyed.allKeys { object[key.stringValue] = try keyed.decode(JSONValue.self, forKey: key) }
            self = .object(object)
        } else if let n = try? container.decode(Double.self) {
            self = .number(n)
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if var unkeyed = try? decoder.unkeyedContainer() {
            var array: [JSONValue] = []
            if let count = unkeyed.count { array.reserveCapacity(count) }
            while !unkeyed.isAtEnd { array.append(try unkeyed.decode(JSONValue.self)) }
            self = .array(array)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let n):
            // JSON has no NaN or infinity; a generic encoder would refuse them, so they are written as null.
            if !n.isFinite {
                try container.encodeNil()
            } else if abs(n) < 1e15, let integer = Int64(exactly: n) {
                try container.encode(integer)
            } else {
                try container.encode(n)
            }
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}

/// A coding key for any string (objects with keys chosen by users).
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
