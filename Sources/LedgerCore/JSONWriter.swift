/// A value that writes itself as compact JSON with sorted keys, by hand: no `Encoder`, no intermediate tree.
/// Its bytes equal what Foundation's `JSONEncoder` with `.sortedKeys` and `.withoutEscapingSlashes` writes for the
/// same value's `Codable` form (checked by `JSONCodecTests`), so logs written by either read the same.
public protocol JSONWritable {
    /// Appends the value's JSON to `writer`.
    func write(to writer: inout JSONWriter)
}

extension JSONWritable {
    /// The value's compact, sorted JSON.
    public var jsonBytes: [UInt8] { jsonBytes(reserving: 512) }

    /// The value's compact, sorted JSON, written into room for `capacity` bytes: values that are mostly larger than
    /// the default (events, run states) are not copied again and again as they grow.
    public func jsonBytes(reserving capacity: Int) -> [UInt8] {
        var writer = JSONWriter(capacity: capacity)
        write(to: &writer)
        return writer.bytes
    }
}

/// Compact JSON written straight into bytes. An object's fields must be written in ascending key order (the order
/// `JSONEncoder`'s `.sortedKeys` gives); optional fields that are nil are left out, as synthesized `Codable` does.
public struct JSONWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 512) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// `{`, the fields `body` writes, `}`.
    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        bytes.append(UInt8(ascii: "{"))
        body(&self)
        bytes.append(UInt8(ascii: "}"))
    }

    /// A field's key (with the comma before it when it is not the object's first).
    public mutating func key(_ key: StaticString) {
        if bytes.last != UInt8(ascii: "{") { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    /// A key chosen at run time (escaped like any string).
    public mutating func key(_ key: String) {
        if bytes.last != UInt8(ascii: "{") { bytes.append(UInt8(ascii: ",")) }
        string(key)
        bytes.append(UInt8(ascii: ":"))
    }

    // MARK: values

    public mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            var plain = true
            for byte in utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                plain = false
                break
            }
            if plain {
                bytes.append(contentsOf: utf8)
            } else {
                escaped(utf8)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        let hex = Array("0123456789abcdef".utf8)
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                bytes.append(contentsOf: [
                    0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 15)],
                ])
            default: bytes.append(byte)
            }
        }
    }

    public mutating func int(_ value: Int64) {
        if value == 0 {
            bytes.append(0x30)
            return
        }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 20 digits at most, written backwards
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            while magnitude > 0 {
                buffer[19 - count] = UInt8(truncatingIfNeeded: magnitude % 10) + 0x30
                magnitude /= 10
                count += 1
            }
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: buffer[(20 - count)..<20])
        }
    }

    public mutating func unsigned(_ value: UInt64) {
        if value <= UInt64(Int64.max) {
            int(Int64(value))
        } else {
            bytes.append(contentsOf: String(value).utf8)
        }
    }

    /// A number as `JSONValue` writes it: integers below 1e15 without a fraction, other finite numbers in Swift's
    /// shortest round-tripping form without a trailing `.0` (as `JSONEncoder` writes them), NaN and infinities as
    /// `null` (JSON cannot carry them).
    public mutating func number(_ value: Double) {
        guard value.isFinite else {
            null()
            return
        }
        if abs(value) < 1e15, let integer = Int64(exactly: value) {
            int(integer)
            return
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    public mutating func bool(_ value: Bool) {
        bytes.append(contentsOf: value ? Array("true".utf8) : Array("false".utf8))
    }

    public mutating func null() { bytes.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]) }

    /// JSON that is already compact and sorted (a stored document), as it is.
    public mutating func raw(_ json: some Collection<UInt8>) { bytes.append(contentsOf: json) }

    public mutating func array<C: Collection>(_ elements: C, _ element: (inout JSONWriter, C.Element) -> Void) {
        bytes.append(UInt8(ascii: "["))
        var first = true
        for value in elements {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            element(&self, value)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    public mutating func value(_ value: some JSONWritable) { value.write(to: &self) }

    // MARK: fields (key and value; an optional that is nil writes nothing)

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        string(value)
    }
    public mutating func field(_ name: StaticString, _ value: String?) {
        guard let value else { return }
        field(name, value)
    }
    public mutating func field(_ name: StaticString, _ value: Int) {
        key(name)
        int(Int64(value))
    }
    public mutating func field(_ name: StaticString, _ value: Int?) {
        guard let value else { return }
        field(name, value)
    }
    public mutating func field(_ name: StaticString, _ value: Int64?) {
        guard let value else { return }
        key(name)
        int(value)
    }
    public mutating func field(_ name: StaticString, _ value: UInt64) {
        key(name)
        unsigned(value)
    }
    public mutating func field(_ name: StaticString, _ value: UInt64?) {
        guard let value else { return }
        field(name, value)
    }
    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        bool(value)
    }
    public mutating func field(_ name: StaticString, _ value: Bool?) {
        guard let value else { return }
        field(name, value)
    }
    public mutating func field(_ name: StaticString, _ value: [String]) {
        key(name)
        array(value) { $0.string($1) }
    }
    public mutating func field<T: RawRepresentable>(_ name: StaticString, _ value: T) where T.RawValue == String {
        key(name)
        string(value.rawValue)
    }
    public mutating func field<T: RawRepresentable>(_ name: StaticString, _ value: T?) where T.RawValue == String {
        guard let value else { return }
        field(name, value)
    }
    public mutating func field<T: JSONWritable>(_ name: StaticString, _ value: T) {
        key(name)
        value.write(to: &self)
    }
    public mutating func field<T: JSONWritable>(_ name: StaticString, _ value: T?) {
        guard let value else { return }
        field(name, value)
    }
    public mutating func field<T: JSONWritable>(_ name: StaticString, _ values: [T]) {
        key(name)
        array(values) { $1.write(to: &$0) }
    }
    public mutating func field<T: JSONWritable>(_ name: StaticString, _ values: [T]?) {
        guard let values else { return }
        field(name, values)
    }
}

/// A bare string (the dedup model's state, a run id) as JSONEncoder writes it with sorted keys and unescaped
/// slashes, so read models whose state is a string are stored without `Codable`.
extension String: JSONWritable {
    public func write(to writer: inout JSONWriter) { writer.string(self) }
}

extension JSONValue: JSONWritable {
    public func write(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.null()
        case .bool(let b): writer.bool(b)
        case .number(let n): writer.number(n)
        case .string(let s): writer.string(s)
        case .array(let a): writer.array(a) { $1.write(to: &$0) }
        case .object(let o):
            writer.object { w in
                if o.count == 1, let (key, value) = o.first {
                    w.key(key)
                    value.write(to: &w)
                    return
                }
                // Foundation sorts keys by their UTF-8 bytes (not `String`'s order, which compares NFC forms).
                for key in o.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                    w.key(key)
                    o[key].unsafelyUnwrapped.write(to: &w)
                }
            }
        }
    }
}
