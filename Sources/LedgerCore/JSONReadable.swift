/// A value read by hand from a parsed JSON value (`JSONTree.parse`): no `Decoder`, no coding keys. What
/// synthesized `Codable` accepts, this accepts (a missing optional and `null` both read as nil; unknown keys are
/// ignored); whatever it refuses says where and why (`JSONShapeError`).
public protocol JSONReadable {
    init(json: JSONValue) throws(JSONShapeError)
}

extension JSONReadable {
    /// Parses `bytes` (containers nested at most `maxDepth` levels) and reads the value.
    public init(jsonBytes bytes: some Collection<UInt8>, maxDepth: Int = Limits.storedJSONDepth) throws {
        self = try Self(json: try JSONTree.parse(bytes, maxDepth: maxDepth))
    }
}

/// A JSON value that is not the shape a reader expects: where, and what was wrong.
/// The path is collected only on the way out of a failed read, so reading costs nothing for it.
public struct JSONShapeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The keys (and array indices) from the document's top down to the value.
    public var path: [String]
    public var message: String
    public init(path: [String] = [], message: String) {
        self.path = path
        self.message = message
    }
    /// `data.steps.2.attempt: missing`.
    public var description: String { path.isEmpty ? message : "\(path.joined(separator: ".")): \(message)" }

    /// The same error one level further out, inside `key`.
    public func inside(_ key: String) -> JSONShapeError { JSONShapeError(path: [key] + path, message: message) }

    static func expected(_ what: String, found value: JSONValue) -> JSONShapeError {
        JSONShapeError(message: "expected \(what), found \(value.compactJSON.prefix(40))")
    }
}

/// The fields of a JSON object being read.
public struct JSONFields {
    public let object: [String: JSONValue]

    public init(_ value: JSONValue) throws(JSONShapeError) {
        guard case .object(let object) = value else { throw .expected("an object", found: value) }
        self.object = object
    }

    /// A field that must be there (and not `null`).
    public func value<T: JSONReadable>(_ key: String) throws(JSONShapeError) -> T {
        guard let value = object[key] else { throw JSONShapeError(path: [key], message: "missing") }
        guard value != .null else { throw JSONShapeError(path: [key], message: "is null") }
        do throws(JSONShapeError) { return try T(json: value) } catch { throw error.inside(key) }
    }

    /// A field that must be there, read whatever it holds (`null` too, for a `T` that takes it).
    public func present<T: JSONReadable>(_ key: String) throws(JSONShapeError) -> T {
        guard let value = object[key] else { throw JSONShapeError(path: [key], message: "missing") }
        do throws(JSONShapeError) { return try T(json: value) } catch { throw error.inside(key) }
    }

    /// A field that may be missing or `null` (nil then).
    public func optional<T: JSONReadable>(_ key: String) throws(JSONShapeError) -> T? {
        guard let value = object[key], value != .null else { return nil }
        do throws(JSONShapeError) { return try T(json: value) } catch { throw error.inside(key) }
    }

    /// A string field.
    public func string(_ key: String) throws(JSONShapeError) -> String {
        guard case .string(let s)? = object[key] else { return try value(key) }
        return s
    }

    /// A string field that may be missing or `null`.
    public func optionalString(_ key: String) throws(JSONShapeError) -> String? {
        switch object[key] {
        case .string(let s)?: return s
        case nil, .null?: return nil
        case let other?: throw JSONShapeError.expected("a string", found: other).inside(key)
        }
    }

    /// A free-form field that must be there (it may be `null`), as synthesized `Codable` reads a `JSONValue`.
    public func json(_ key: String) throws(JSONShapeError) -> JSONValue {
        guard let value = object[key] else { throw JSONShapeError(path: [key], message: "missing") }
        return value
    }
}

extension String: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) {
        guard case .string(let s) = json else { throw .expected("a string", found: json) }
        self = s
    }
}

extension Bool: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) {
        guard case .bool(let b) = json else { throw .expected("true or false", found: json) }
        self = b
    }
}

extension Double: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) {
        guard case .number(let n) = json else { throw .expected("a number", found: json) }
        self = n
    }
}

/// Integers are read from JSON numbers, which carry integers exactly only up to 2^53 in size: a larger one was
/// rounded when it was parsed, so it is refused rather than read as a neighbour of what was written.
enum JSONInteger {
    static let limit = 9_007_199_254_740_992.0  // 2^53

    static func read<T: BinaryInteger>(_ json: JSONValue, _ what: String) throws(JSONShapeError) -> T {
        guard case .number(let n) = json, n.rounded(.towardZero) == n else { throw .expected(what, found: json) }
        if n < 0, !T.isSigned {
            throw JSONShapeError(message: "\(what) must not be negative, found \(json.compactJSON.prefix(40))")
        }
        guard abs(n) < limit, let value = T(exactly: n) else {
            throw JSONShapeError(
                message: "\(what) out of range: \(json.compactJSON.prefix(40)) (integers up to 2^53 - 1 in size)")
        }
        return value
    }

    /// `n` as a `T` when it is an integer a JSON number carries exactly.
    static func exact<T: BinaryInteger>(_ n: Double) -> T? { abs(n) < limit ? T(exactly: n) : nil }
}

extension Int: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) { self = try JSONInteger.read(json, "an integer") }
}

extension Int64: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) { self = try JSONInteger.read(json, "an integer") }
}

extension UInt64: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) {
        self = try JSONInteger.read(json, "a sequence number (an integer ≥ 0)")
    }
}

extension JSONValue: JSONReadable {
    public init(json: JSONValue) { self = json }
}

extension Array: JSONReadable where Element: JSONReadable {
    public init(json: JSONValue) throws(JSONShapeError) {
        guard case .array(let values) = json else { throw .expected("an array", found: json) }
        var out: [Element] = []
        out.reserveCapacity(values.count)
        for (index, value) in values.enumerated() {
            do throws(JSONShapeError) {
                out.append(try Element(json: value))
            } catch {
                throw error.inside(String(index))
            }
        }
        self = out
    }
}

/// A string enumeration read by its raw value.
public protocol JSONStringEnum: JSONReadable, RawRepresentable where RawValue == String {}

extension JSONStringEnum {
    public init(json: JSONValue) throws(JSONShapeError) {
        guard case .string(let raw) = json, let value = Self(rawValue: raw) else {
            throw .expected("one of the known values", found: json)
        }
        self = value
    }
}
