import Foundation

/// A JSON parser straight into `JSONValue`, and a `Decoder` over `JSONValue` trees: decoding an event this way
/// parses its bytes once and turns nested free-form JSON (`output`, `input`, trigger data) into values without the
/// guesswork `JSONValue.init(from:)` needs under a generic decoder.
public enum JSONTree {
    /// Where (byte offset) and why the bytes are not the JSON the parser accepts.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public init(offset: Int, message: String) {
            self.offset = offset
            self.message = message
        }
        public var description: String { "invalid JSON: \(message) at byte \(offset)" }
    }

    /// Parses JSON text. Containers may nest at most `maxDepth` levels (`Limits.storedJSONDepth` for what the
    /// engine wrote itself; pass `Limits.inboundJSONDepth` for anything from outside). Numbers must be finite
    /// doubles; unpaired surrogates in `\u` escapes become U+FFFD. Never traps: whatever cannot be read is a
    /// `ParseError` naming the byte offset.
    public static func parse(
        _ bytes: some Collection<UInt8>, maxDepth: Int = Limits.storedJSONDepth
    ) throws(ParseError) -> JSONValue {
        // Parsed in place when the bytes are contiguous (an array, LMDB's memory), else copied once.
        if let raw = bytes as? UnsafeRawBufferPointer {
            return try parse(buffer: raw.assumingMemoryBound(to: UInt8.self), maxDepth: maxDepth).get()
        }
        if let result = bytes.withContiguousStorageIfAvailable({ parse(buffer: $0, maxDepth: maxDepth) }) {
            return try result.get()
        }
        return try Array(bytes).withUnsafeBufferPointer { parse(buffer: $0, maxDepth: maxDepth) }.get()
    }

    static func parse(buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int) -> Result<JSONValue, ParseError> {
        var parser = Parser(bytes: buffer, maxDepth: maxDepth)
        do throws(ParseError) {
            parser.skipSpace()
            let value = try parser.value(depth: 0)
            parser.skipSpace()
            guard parser.index == buffer.count else { throw parser.fail("unexpected text after the value") }
            return .success(value)
        } catch {
            return .failure(error)
        }
    }

    /// Decodes `T` from JSON bytes through the tree (containers nested at most `maxDepth` levels).
    /// A value already parsed, read as `T` (no bytes in between).
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        if let readable = T.self as? any JSONReadable.Type { return try readable.init(json: value) as! T }
        return try T(from: TreeDecoder(value: value, codingPath: []))
    }

    public static func decode<T: Decodable>(
        _ type: T.Type, from bytes: some Collection<UInt8>, maxDepth: Int = Limits.storedJSONDepth
    ) throws -> T {
        try decode(T.self, from: try parse(bytes, maxDepth: maxDepth))
    }

    /// The value of `text` when it is a JSON number (RFC 8259 grammar: no sign but a leading `-`, no leading
    /// zeros, no `inf`, `nan` or hex) that is a finite double; else nil.
    public static func number(_ text: some StringProtocol) -> Double? {
        let utf8 = Array(text.utf8)
        guard JSONNumberGrammar.length(of: utf8, from: 0) == utf8.count, !utf8.isEmpty else { return nil }
        guard let value = Double(String(decoding: utf8, as: UTF8.self)), value.isFinite else { return nil }
        return value
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let maxDepth: Int
        var index = 0
        /// The members of the objects being read, innermost last: each object's dictionary is made once its
        /// members are known, at its final size (no growing and rehashing as members arrive).
        var members: [(key: String, value: JSONValue)] = []

        init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        mutating func skipSpace() {
            while index < bytes.count,
                bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09
            { index += 1 }
        }

        func fail(_ message: String) -> ParseError { ParseError(offset: index, message: message) }

        /// A value whose containers are `depth` levels deep (0 at the top).
        mutating func value(depth: Int) throws(ParseError) -> JSONValue {
            guard index < bytes.count else { throw fail("unexpected end") }
            let c = bytes[index]
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                guard depth < maxDepth else {
                    throw fail("containers nested deeper than \(maxDepth) levels; flatten the document")
                }
            }
            switch c {
            case UInt8(ascii: "{"):
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .object([:])
                }
                let first = members.count
                while true {
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                    let key = try string()
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    index += 1
                    skipSpace()
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard index < bytes.count else { throw fail("unexpected end") }
                    if bytes[index] == UInt8(ascii: ",") {
                        index += 1
                        continue
                    }
                    guard bytes[index] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
                    index += 1
                    var object = [String: JSONValue](minimumCapacity: members.count - first)
                    for member in members[first...] { object[member.key] = member.value }  // a repeated key: the last
                    members.removeSubrange(first...)
                    return .object(object)
                }
            case UInt8(ascii: "["):
                index += 1
                var array: [JSONValue] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .array(array)
                }
                while true {
                    skipSpace()
                    array.append(try value(depth: depth + 1))
                    skipSpace()
                    guard index < bytes.count else { throw fail("unexpected end") }
                    if bytes[index] == UInt8(ascii: ",") {
                        index += 1
                        continue
                    }
                    guard bytes[index] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
                    index += 1
                    return .array(array)
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            default:
                return .number(try number())
            }
        }

        mutating func literal(_ word: StaticString) throws(ParseError) {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { throw fail("unexpected end") }
            for i in 0..<count where bytes[index + i] != word.utf8Start[i] { throw fail("unexpected character") }
            index += count
        }

        mutating func number() throws(ParseError) -> Double {
            let start = index
            let length = JSONNumberGrammar.length(of: bytes, from: start)
            guard length > 0 else { throw fail("unexpected character") }
            index = start + length
            // Integers (most numbers in events) without the C library: at most 15 digits, exact in an Int64.
            var negative = false
            var i = start
            if bytes[i] == UInt8(ascii: "-") {
                negative = true
                i += 1
            }
            var integer: Int64 = 0
            var plain = i < index && index - i <= 15
            while plain, i < index {
                let c = bytes[i]
                if c >= 0x30 && c <= 0x39 {
                    integer = integer * 10 + Int64(c - 0x30)
                    i += 1
                } else {
                    plain = false
                }
            }
            if plain { return negative ? -Double(integer) : Double(integer) }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            guard let value = Double(text) else { throw ParseError(offset: start, message: "bad number") }
            guard value.isFinite else {
                throw ParseError(offset: start, message: "number out of range")
            }
            return value
        }

        mutating func string() throws(ParseError) -> String {
            index += 1  // opening quote
            let start = index
            // Fast path: no escapes.
            while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") {
                index += 1
            }
            guard index < bytes.count else { throw fail("unterminated string") }
            if bytes[index] == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            var out = Array(bytes[start..<index])
            while index < bytes.count {
                let c = bytes[index]
                if c == UInt8(ascii: "\"") {
                    index += 1
                    return String(decoding: out, as: UTF8.self)
                }
                if c != UInt8(ascii: "\\") {
                    out.append(c)
                    index += 1
                    continue
                }
                index += 1
                guard index < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if scalar >= 0xD800, scalar < 0xDC00 {
                        // A high surrogate counts only with a low one right after it; anything else leaves it
                        // unpaired (U+FFFD) and the escape after it is read on its own.
                        let high = scalar
                        scalar = 0xFFFD
                        if bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        {
                            let resume = index
                            index += 2
                            if let low = try? hex4(), low >= 0xDC00, low <= 0xDFFF {
                                scalar = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                index = resume
                            }
                        }
                    }
                    let text = Unicode.Scalar(scalar).map { String(Character($0)) } ?? "\u{FFFD}"
                    out.append(contentsOf: Array(text.utf8))
                default:
                    throw fail("bad escape")
                }
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard bytes.count - index >= 4 else { throw fail("bad \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw fail("bad \\u escape")
                }
                v = v * 16 + d
                index += 1
            }
            return v
        }
    }
}

/// The JSON number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
enum JSONNumberGrammar {
    /// How many bytes from `start` form a JSON number (0 when none does).
    static func length(of bytes: some RandomAccessCollection<UInt8>, from start: Int) -> Int {
        var i = start
        let end = bytes.count
        func at(_ j: Int) -> UInt8? { j < end ? bytes[bytes.index(bytes.startIndex, offsetBy: j)] : nil }
        func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        if at(i) == UInt8(ascii: "-") { i += 1 }
        guard isDigit(at(i)) else { return 0 }
        if at(i) == UInt8(ascii: "0") {
            i += 1
        } else {
            while isDigit(at(i)) { i += 1 }
        }
        if at(i) == UInt8(ascii: "."), isDigit(at(i + 1)) {
            i += 1
            while isDigit(at(i)) { i += 1 }
        }
        if at(i) == UInt8(ascii: "e") || at(i) == UInt8(ascii: "E") {
            var j = i + 1
            if at(j) == UInt8(ascii: "+") || at(j) == UInt8(ascii: "-") { j += 1 }
            if isDigit(at(j)) {
                while isDigit(at(j)) { j += 1 }
                i = j
            }
        }
        return i - start
    }
}
