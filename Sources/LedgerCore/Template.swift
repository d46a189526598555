import Foundation

/// Output and `with` templates: strings containing `{{ path }}` references to `trigger`, `input`,
/// `steps.<id>.output` and `run`. A string that is exactly one reference keeps the referenced JSON type.
public enum Template {
    public static let roots: Set<String> = ["trigger", "input", "steps", "run", SecretReferences.root]

    /// Why a template could not be rendered against the run's scope (a missing value, a bad filter).
    public struct RenderError: Error, Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var message: String
        public init(path: String, message: String) {
            self.path = path
            self.message = message
        }
        public var description: String { "\(path): \(message)" }
    }

    /// A piece of a template string.
    enum Piece: Equatable {
        case text(String)
        case reference(String)
    }

    static func parse(_ string: String, at path: String = "template") throws(RenderError) -> [Piece] {
        var pieces: [Piece] = []
        var rest = string.startIndex
        while let open = pair(UInt8(ascii: "{"), in: string, from: rest) {
            if open > rest { pieces.append(.text(String(string[rest..<open]))) }
            let inside = string.utf8.index(open, offsetBy: 2)
            guard let close = pair(UInt8(ascii: "}"), in: string, from: inside) else {
                let offset = string.distance(from: string.startIndex, to: open)
                throw RenderError(path: path, message: "the \"{{\" at character \(offset) is never closed with \"}}\"")
            }
            let reference = string[inside..<close].trimmingWhitespace()
            if reference.isEmpty {
                let offset = string.distance(from: string.startIndex, to: open)
                throw RenderError(path: path, message: "an empty reference \"{{}}\" at character \(offset)")
            }
            pieces.append(.reference(reference))
            rest = string.utf8.index(close, offsetBy: 2)
        }
        if rest < string.endIndex { pieces.append(.text(String(string[rest...]))) }
        return pieces
    }

    /// Where `byte` first appears twice in a row in `string` at or after `start`, as Foundation's search, which this
    /// byte scan replaces, found it: a pair followed by a character that extends the second brace (a combining
    /// accent, say) is no delimiter (see `isBoundary`; a test holds the two together). Every render of every step
    /// looks for `{{`.
    static func pair(_ byte: UInt8, in string: String, from start: String.Index) -> String.Index? {
        let utf8 = string.utf8
        var index = start
        var previous: String.Index?
        while index < utf8.endIndex {
            if utf8[index] == byte {
                if let first = previous {
                    let after = utf8.index(after: index)
                    if isBoundary(after, in: string, after: byte) { return first }
                }
                previous = index
            } else {
                previous = nil
            }
            utf8.formIndex(after: &index)
        }
        return nil
    }

    /// Whether the pair of `brace` ending before `index` stands alone: always before ASCII or at the end. Before
    /// another character (rare in a template) Foundation decides, on the pair and that character alone, as it did
    /// for the whole template before: which characters extend a brace depends on the Unicode tables of its version.
    static func isBoundary(_ index: String.Index, in string: String, after brace: UInt8) -> Bool {
        let utf8 = string.utf8
        if index == utf8.endIndex || utf8[index] < 0x80 { return true }
        let delimiter = String(decoding: [brace, brace], as: UTF8.self)
        return (delimiter + String(string.unicodeScalars[index])).range(of: delimiter) != nil
    }

    /// Whether `string` holds a `{{` (a template; anything else renders as itself).
    static func hasReference(_ string: String) -> Bool {
        pair(UInt8(ascii: "{"), in: string, from: string.startIndex) != nil
    }

    /// Every reference in a template value, with the JSON path where it appears.
    public static func references(
        in value: JSONValue, at path: String = ""
    ) throws(RenderError) -> [(path: String, reference: String)] {
        switch value {
        case .string(let s):
            var found: [(String, String)] = []
            for piece in try parse(s, at: path.isEmpty ? "template" : path) {
                if case .reference(let r) = piece { found.append((path, r)) }
            }
            return found
        case .array(let a):
            var found: [(String, String)] = []
            for (i, v) in a.enumerated() { found += try references(in: v, at: "\(path)[\(i)]") }
            return found
        case .object(let o):
            var found: [(String, String)] = []
            for key in o.keys.sorted() {
                found += try references(in: o[key]!, at: path.isEmpty ? key : "\(path).\(key)")
            }
            return found
        default:
            return []
        }
    }

    /// Renders a template value against `context`.
    public static func render(
        _ value: JSONValue, context: JSONValue, at path: String = ""
    ) throws(RenderError) -> JSONValue {
        try render(value, scope: context, at: path)
    }

    /// Renders a template value against a run's scope (what the engine does at each decision).
    public static func render(
        _ value: JSONValue, context: RunScope, at path: String = ""
    ) throws(RenderError) -> JSONValue {
        try render(value, scope: context, at: path)
    }

    static func render<Scope: TemplateScope>(
        _ value: JSONValue, scope context: Scope, at path: String
    ) throws(RenderError) -> JSONValue {
        switch value {
        case .string(let s):
            guard hasReference(s) else { return value }
            let pieces = try parse(s, at: path.isEmpty ? "template" : path)
            if pieces.count == 1, case .reference(let r) = pieces[0] {
                // A secret stays a reference: it is resolved only when the step executes, never recorded.
                if r.hasPrefix(SecretReferences.root + ".") { return .string("{{\(r)}}") }
                return context.lookup(r) ?? .null
            }
            var out = ""
            for piece in pieces {
                switch piece {
                case .text(let t): out += t
                case .reference(let r) where r.hasPrefix(SecretReferences.root + "."):
                    out += "{{\(r)}}"
                case .reference(let r):
                    guard let v = context.lookup(r) else {
                        throw RenderError(
                            path: path.isEmpty ? "template" : path, message: "{{\(r)}} has no value in this run")
                    }
                    out += v.interpolated
                }
                // A text that references large values many times could grow without end: stop at what an event holds.
                if out.utf8.count > Limits.streamMessageBytes {
                    throw RenderError(
                        path: path.isEmpty ? "template" : path,
                        message: "the rendered text passes \(Limits.streamMessageBytes) bytes; reference smaller values"
                    )
                }
            }
            return .string(out)
        case .array(let a):
            var out: [JSONValue] = []
            out.reserveCapacity(a.count)
            for (i, v) in a.enumerated() { out.append(try render(v, scope: context, at: "\(path)[\(i)]")) }
            return .array(out)
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o { out[k] = try render(v, scope: context, at: path.isEmpty ? k : "\(path).\(k)") }
            return .object(out)
        default:
            return value
        }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        // Most references have no space around them: an ASCII byte other than a space at either end is a whole
        // character that is no whitespace (no ASCII letter extends the character before it, and a character that
        // starts with one is no whitespace), so the text is kept without looking at its characters.
        let bytes = utf8
        if let first = bytes.first, Self.isPlainASCII(first),
            Self.isPlainASCII(bytes[bytes.index(bytes.startIndex, offsetBy: bytes.count - 1)])
        {
            return String(self)
        }
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }

    /// An ASCII byte that is no whitespace (Unicode's White_Space in ASCII: tab to carriage return, and space).
    static func isPlainASCII(_ byte: UInt8) -> Bool {
        byte < 0x80 && byte != 0x20 && !(0x09...0x0D).contains(byte)
    }
}

/// `when` conditions. Syntax (documented in README):
///
///     condition := or
///     or        := and ( "||" and )*
///     and       := not ( "&&" not )*
///     not       := "!" not | compare
///     compare   := operand ( ("==" | "!=" | ">" | ">=" | "<" | "<=") operand )?
///     operand   := "{{" path "}}" | JSON literal (string, number, true, false, null) | "(" or ")"
///
/// A lone operand is tested for truthiness (null, false, 0, "" and empty collections are false).
public indirect enum Condition: Sendable, Equatable {
    case reference(String)
    case literal(JSONValue)
    case not(Condition)
    case and(Condition, Condition)
    case or(Condition, Condition)
    case compare(Condition, String, Condition)

    /// Where and why a template text cannot be parsed.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses a condition of at most `Limits.conditionCharacters` characters, with parentheses and `!` nested at
    /// most `Limits.conditionDepth` deep and at most `Limits.conditionOperators` operators. Errors name the
    /// character where the problem is (counted from 0).
    public static func parse(_ text: String) throws(ParseError) -> Condition {
        let chars = Array(text.unicodeScalars)
        guard chars.count <= Limits.conditionCharacters else {
            throw ParseError(
                message:
                    "the condition is \(chars.count) characters long; at most \(Limits.conditionCharacters) are accepted (split the test across steps)"
            )
        }
        var parser = ConditionParser(chars)
        let condition = try parser.parseOr()
        parser.skipSpace()
        if !parser.atEnd { throw ParseError(message: "unexpected \"\(parser.remaining)\" at character \(parser.i)") }
        return condition
    }

    /// Every reference the condition reads.
    public var references: [String] {
        switch self {
        case .reference(let r): return [r]
        case .literal: return []
        case .not(let c): return c.references
        case .and(let a, let b), .or(let a, let b), .compare(let a, _, let b): return a.references + b.references
        }
    }

    public func value(in context: JSONValue) -> JSONValue { value(scope: context) }
    public func holds(in context: JSONValue) -> Bool { holds(scope: context) }
    /// Whether the condition holds in a run's scope (what the engine does at each decision).
    public func holds(in context: RunScope) -> Bool { holds(scope: context) }

    func value<Scope: TemplateScope>(scope context: Scope) -> JSONValue {
        switch self {
        case .reference(let r): return context.lookup(r) ?? .null
        case .literal(let v): return v
        default: return .bool(holds(scope: context))
        }
    }

    func holds<Scope: TemplateScope>(scope context: Scope) -> Bool {
        switch self {
        case .reference, .literal: return value(scope: context).isTruthy
        case .not(let c): return !c.holds(scope: context)
        case .and(let a, let b): return a.holds(scope: context) && b.holds(scope: context)
        case .or(let a, let b): return a.holds(scope: context) || b.holds(scope: context)
        case .compare(let a, let op, let b):
            let l = a.value(scope: context)
            let r = b.value(scope: context)
            switch op {
            case "==": return l == r
            case "!=": return l != r
            default:
                if let x = l.numberValue, let y = r.numberValue {
                    switch op {
                    case ">": return x > y
                    case ">=": return x >= y
                    case "<": return x < y
                    default: return x <= y
                    }
                }
                if let x = l.stringValue, let y = r.stringValue {
                    switch op {
                    case ">": return x > y
                    case ">=": return x >= y
                    case "<": return x < y
                    default: return x <= y
                    }
                }
                return false
            }
        }
    }
}

struct ConditionParser {
    let chars: [Unicode.Scalar]
    var i = 0
    /// Parentheses and `!` currently open.
    var depth = 0
    /// Binary operators read so far (each deepens the tree the evaluation walks).
    var operators = 0

    init(_ chars: [Unicode.Scalar]) { self.chars = chars }

    var atEnd: Bool { i >= chars.count }
    /// The rest of the text, shortened for messages.
    var remaining: String {
        let rest = chars[min(i, chars.count)...]
        let shown = String(String.UnicodeScalarView(rest.prefix(40)))
        return rest.count > 40 ? shown + "..." : shown
    }

    func fail(_ message: String, at position: Int? = nil) -> Condition.ParseError {
        Condition.ParseError(message: "\(message) at character \(position ?? i)")
    }

    mutating func skipSpace() {
        while i < chars.count, chars[i].properties.isWhitespace { i += 1 }
    }

    mutating func take(_ token: String) -> Bool {
        skipSpace()
        let t = Array(token.unicodeScalars)
        guard chars.count - i >= t.count, chars[i..<i + t.count].elementsEqual(t) else { return false }
        i += t.count
        return true
    }

    mutating func countOperator() throws(Condition.ParseError) {
        operators += 1
        guard operators <= Limits.conditionOperators else {
            throw fail("more than \(Limits.conditionOperators) operators in one condition; split the test across steps")
        }
    }

    mutating func enter() throws(Condition.ParseError) {
        depth += 1
        guard depth <= Limits.conditionDepth else {
            throw fail("parentheses and \"!\" nested deeper than \(Limits.conditionDepth) levels")
        }
    }

    mutating func parseOr() throws(Condition.ParseError) -> Condition {
        var left = try parseAnd()
        while take("||") {
            try countOperator()
            left = .or(left, try parseAnd())
        }
        return left
    }

    mutating func parseAnd() throws(Condition.ParseError) -> Condition {
        var left = try parseNot()
        while take("&&") {
            try countOperator()
            left = .and(left, try parseNot())
        }
        return left
    }

    mutating func parseNot() throws(Condition.ParseError) -> Condition {
        skipSpace()
        if i < chars.count, chars[i] == "!", !(i + 1 < chars.count && chars[i + 1] == "=") {
            i += 1
            try enter()
            let inner = try parseNot()
            depth -= 1
            return .not(inner)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws(Condition.ParseError) -> Condition {
        let left = try parseOperand()
        for op in ["==", "!=", ">=", "<=", ">", "<"] where take(op) {
            try countOperator()
            return .compare(left, op, try parseOperand())
        }
        return left
    }

    mutating func parseOperand() throws(Condition.ParseError) -> Condition {
        skipSpace()
        guard i < chars.count else { throw fail("the condition ends where a value was expected") }
        let start = i
        if take("(") {
            try enter()
            let inner = try parseOr()
            guard take(")") else { throw fail("the \"(\" at character \(start) is never closed") }
            depth -= 1
            return inner
        }
        if take("{{") {
            let from = i
            while chars.count - i >= 2, !(chars[i] == "}" && chars[i + 1] == "}") { i += 1 }
            guard chars.count - i >= 2 else {
                throw fail("the \"{{\" at character \(start) is never closed with \"}}\"")
            }
            let reference = String(String.UnicodeScalarView(chars[from..<i])).trimmingWhitespace()
            i += 2
            guard !reference.isEmpty else { throw fail("an empty reference \"{{}}\"", at: start) }
            return .reference(reference)
        }
        if chars[i] == "\"" || chars[i] == "'" {
            let quote = chars[i]
            i += 1
            var s = String.UnicodeScalarView()
            while i < chars.count, chars[i] != quote {
                if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                s.append(chars[i])
                i += 1
            }
            guard i < chars.count else { throw fail("the string at character \(start) is never closed") }
            i += 1
            return .literal(.string(String(s)))
        }
        while i < chars.count,
            chars[i].properties.isAlphabetic || chars[i].properties.numericType != nil
                || chars[i] == "." || chars[i] == "-" || chars[i] == "_" || chars[i] == "+"
        {
            i += 1
        }
        let word = String(String.UnicodeScalarView(chars[start..<i]))
        switch word {
        case "true": return .literal(true)
        case "false": return .literal(false)
        case "null": return .literal(.null)
        default:
            if word.isEmpty { throw fail("unexpected \"\(remaining)\"") }
            if let n = JSONTree.number(word) { return .literal(.number(n)) }
            if let first = word.unicodeScalars.first, first == "-" || ("0"..."9").contains(first) {
                throw fail(
                    "\"\(word.prefix(40))\" is not a number JSON accepts (finite, no sign but \"-\", no hex)", at: start
                )
            }
            throw fail("\"\(word.prefix(40))\" is neither a {{reference}} nor a JSON value (quote strings)", at: start)
        }
    }
}
