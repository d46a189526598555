#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address, parsed from every literal form a URL host can take.
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    case v4(UInt32)
    /// The 16 bytes, network order.
    case v6([UInt8])

    /// Parses an address literal: dotted IPv4 in the forms `inet_aton` and URL parsers accept (`127.1`,
    /// `2130706433`, `0x7f.1`, `0177.0.0.1`), and IPv6 with or without brackets (`[::ffff:7f00:1]`). Nil when the
    /// text is not an address (a host name), or when it looks numeric but is out of range (`1.2.3.999`): see
    /// `looksNumeric`.
    public static func parse(_ text: String) -> IPAddress? {
        var text = Substring(text)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        if text.contains(":") { return parseV6(String(text)) }
        return parseV4(text).map(IPAddress.v4)
    }

    /// Whether a host name's last label is a number (decimal, octal or hex): URL parsers then take the whole host
    /// as an IPv4 address, so such a host must parse as one or be refused (never sent to DNS).
    public static func looksNumeric(_ host: String) -> Bool {
        var host = Substring(host)
        if host.hasSuffix(".") { host = host.dropLast() }
        guard let last = host.split(separator: ".", omittingEmptySubsequences: false).last else { return false }
        return number(last) != nil || (!last.isEmpty && last.allSatisfy { $0.isASCII && $0.isNumber })
    }

    static func number(_ part: Substring) -> UInt64? {
        if part.isEmpty { return nil }
        var digits = part
        var radix = 10
        if digits.lowercased().hasPrefix("0x") {
            digits = digits.dropFirst(2)
            radix = 16
            if digits.isEmpty { return 0 }
        } else if digits.count > 1, digits.hasPrefix("0") {
            digits = digits.dropFirst()
            radix = 8
        }
        // At most 32 bits are meaningful; longer digit runs are out of range (and must not overflow).
        guard digits.count <= 32, let value = UInt64(digits, radix: radix) else { return nil }
        return value
    }

    static func parseV4(_ text: Substring) -> UInt32? {
        var text = text
        if text.hasSuffix(".") { text = text.dropLast() }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...4).contains(parts.count) else { return nil }
        var numbers: [UInt64] = []
        for part in parts {
            guard let n = number(part) else { return nil }
            numbers.append(n)
        }
        var value: UInt64 = 0
        for n in numbers.dropLast() {
            guard n <= 255 else { return nil }
            value = value << 8 | n
        }
        let remainingBits = UInt64(8 * (5 - numbers.count))
        guard let last = numbers.last, last < (1 << remainingBits) else { return nil }
        value = value << remainingBits | last
        return UInt32(truncatingIfNeeded: value)
    }

    static func parseV6(_ text: String) -> IPAddress? {
        // A zone (`fe80::1%eth0`) is refused: it names an interface of this machine.
        guard !text.contains("%"), text.utf8.count <= 45 else { return nil }
        var storage = in6_addr()
        let parsed = text.withCString { inet_pton(AF_INET6, $0, &storage) }
        guard parsed == 1 else { return nil }
        return .v6(withUnsafeBytes(of: &storage) { Array($0) })
    }

    public var description: String {
        switch self {
        case .v4(let value):
            return "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
        case .v6(let bytes):
            let groups: [UInt16] = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
            // The longest run of zero groups (two or more) becomes "::" (RFC 5952).
            var best = (start: -1, length: 0)
            var i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8, groups[j] == 0 { j += 1 }
                    if j - i > best.length { best = (i, j - i) }
                    i = j
                } else {
                    i += 1
                }
            }
            func hex(_ part: ArraySlice<UInt16>) -> String { part.map { String($0, radix: 16) }.joined(separator: ":") }
            if best.length >= 2 {
                let head = hex(groups[0..<best.start])
                let tail = hex(groups[(best.start + best.length)...])
                return "\(head)::\(tail)"
            }
            return hex(groups[...])
        }
    }

    /// The form to put in a URL's host: IPv6 in brackets.
    public var urlHost: String {
        if case .v6 = self { return "[\(description)]" }
        return description
    }

    /// The embedded IPv4 address of IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
    /// (`2002:aabb:ccdd::`) addresses: what a connection to them may reach.
    public var embeddedV4: UInt32? {
        guard case .v6(let b) = self else { return nil }
        func v4(_ at: Int) -> UInt32 { UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3]) }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return v4(12) }
        if b[0..<12].elementsEqual([0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]) { return v4(12) }
        if b[0] == 0x20 && b[1] == 0x02 { return v4(2) }
        return nil
    }

    /// Why a request must not go to this address by default (loopback, private, link-local and metadata, ...),
    /// or nil for an ordinary public address.
    public var specialUse: String? {
        switch self {
        case .v4(let a):
            return Self.specialUseV4(a)
        case .v6(let b):
            if let embedded = embeddedV4 {
                return Self.specialUseV4(embedded).map { "\($0), embedded in an IPv6 address" }
            }
            if b[0..<15].allSatisfy({ $0 == 0 }) {
                return b[15] == 1 ? "loopback" : b[15] == 0 ? "unspecified" : "IPv4-compatible (deprecated)"
            }
            if b[0..<12].allSatisfy({ $0 == 0 }) { return "IPv4-compatible (deprecated)" }
            if b[0] & 0xfe == 0xfc { return "private (unique local fc00::/7)" }
            if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return "link-local (fe80::/10)" }
            if b[0] == 0xfe && b[1] & 0xc0 == 0xc0 { return "site-local (fec0::/10, deprecated)" }
            if b[0] == 0xff { return "multicast (ff00::/8)" }
            if b[0] == 0x01 && b[1] == 0x00 && b[2..<8].allSatisfy({ $0 == 0 }) { return "discard-only (100::/64)" }
            if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8 { return "documentation (2001:db8::/32)" }
            return nil
        }
    }

    static func specialUseV4(_ a: UInt32) -> String? {
        func within(_ network: UInt32, _ bits: UInt32) -> Bool { a >> (32 - bits) == network >> (32 - bits) }
        if within(0x7f00_0000, 8) { return "loopback (127.0.0.0/8)" }
        if within(0x0000_0000, 8) { return "unspecified (0.0.0.0/8)" }
        if within(0x0a00_0000, 8) { return "private (10.0.0.0/8)" }
        if within(0xac10_0000, 12) { return "private (172.16.0.0/12)" }
        if within(0xc0a8_0000, 16) { return "private (192.168.0.0/16)" }
        if within(0xa9fe_0000, 16) { return "link-local (169.254.0.0/16, where cloud metadata services answer)" }
        if within(0x6440_0000, 10) { return "shared address space (100.64.0.0/10, carrier-grade NAT)" }
        if within(0xc000_0000, 24) { return "IETF protocol assignments (192.0.0.0/24)" }
        if within(0xc612_0000, 15) { return "benchmarking (198.18.0.0/15)" }
        if within(0xe000_0000, 4) { return "multicast (224.0.0.0/4)" }
        if a == 0xffff_ffff { return "broadcast (255.255.255.255)" }
        if within(0xf000_0000, 4) { return "reserved (240.0.0.0/4)" }
        return nil
    }

    /// Whether this address lies in `network`/`prefix` (an IPv4 network also matches IPv4-mapped IPv6 addresses).
    public func isWithin(_ network: IPAddress, prefix: Int) -> Bool {
        switch (self, network) {
        case (.v4(let a), .v4(let n)):
            guard prefix > 0 else { return true }
            return a >> (32 - UInt32(prefix)) == n >> (32 - UInt32(prefix))
        case (.v6, .v4):
            guard let embedded = embeddedV4 else { return false }
            return IPAddress.v4(embedded).isWithin(network, prefix: prefix)
        case (.v6(let a), .v6(let n)):
            var bits = prefix
            for i in 0..<16 where bits > 0 {
                let take = min(8, bits)
                let mask = UInt8(truncatingIfNeeded: 0xff << (8 - take))
                if a[i] & mask != n[i] & mask { return false }
                bits -= take
            }
            return true
        case (.v4, .v6):
            return false
        }
    }
}

/// One entry of the outbound HTTP allowlist: `HOST[:PORT]`, where HOST is a host name, an IP address or a network
/// in CIDR notation (`10.1.0.0/16`); IPv6 with a port in brackets (`[::1]:8080`).
public struct HTTPAllowEntry: Sendable, Equatable, CustomStringConvertible {
    public enum Target: Sendable, Equatable {
        case host(String)
        case network(IPAddress, prefix: Int)
    }
    public var target: Target
    /// Nil: any port.
    public var port: Int?

    public init(target: Target, port: Int?) {
        self.target = target
        self.port = port
    }

    public var description: String {
        let host: String
        switch target {
        case .host(let name): host = name
        case .network(let address, let prefix):
            let full = (address.description.contains(":") ? 128 : 32) == prefix
            host = full ? address.urlHost : "\(address.description)/\(prefix)"
        }
        return port.map { "\(host):\($0)" } ?? host
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var entry: String
        public var reason: String
        public var description: String {
            "allowlist entry \"\(entry)\": \(reason); write HOST[:PORT], e.g. api.example.com:443, 10.0.0.0/8, [::1]:8080"
        }
    }

    /// Parses one entry.
    public static func parse(_ text: String) throws(ParseError) -> HTTPAllowEntry {
        let entry = text.trimmingSpaces()
        func fail(_ reason: String) -> ParseError { ParseError(entry: String(entry.prefix(100)), reason: reason) }
        guard !entry.isEmpty else { throw fail("it is empty") }
        guard entry.utf8.count <= 300 else { throw fail("it is longer than 300 bytes") }
        var hostPart = Substring(entry)
        var portText: Substring?
        if entry.hasPrefix("[") {
            guard let close = entry.firstIndex(of: "]") else { throw fail("a \"[\" is never closed with \"]\"") }
            hostPart = entry[entry.index(after: entry.startIndex)..<close]
            let rest = entry[entry.index(after: close)...]
            // `[fd00::]/8` keeps its prefix with the address.
            if rest.hasPrefix("/") {
                let slashRest = rest.dropFirst()
                let prefixDigits = slashRest.prefix { $0 != ":" }
                hostPart = Substring("\(hostPart)/\(prefixDigits)")
                let after = slashRest.dropFirst(prefixDigits.count)
                if !after.isEmpty {
                    guard after.hasPrefix(":") else { throw fail("unexpected text after the address") }
                    portText = after.dropFirst()
                }
            } else if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw fail("unexpected text after \"]\"") }
                portText = rest.dropFirst()
            }
        } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
            hostPart = entry[..<colon]
            portText = entry[entry.index(after: colon)...]
        }
        var port: Int?
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw fail("the port must be a number from 1 to 65535") }
            port = value
        }
        if let slash = hostPart.firstIndex(of: "/") {
            guard let address = IPAddress.parse(String(hostPart[..<slash])) else { throw fail("a network must start with an IP address") }
            let bits: Int
            if case .v4 = address { bits = 32 } else { bits = 128 }
            guard let prefix = Int(hostPart[hostPart.index(after: slash)...]), (0...bits).contains(prefix) else {
                throw fail("the prefix length after \"/\" must be a number from 0 to \(bits)")
            }
            return HTTPAllowEntry(target: .network(address, prefix: prefix), port: port)
        }
        if let address = IPAddress.parse(String(hostPart)) {
            if case .v4 = address { return HTTPAllowEntry(target: .network(address, prefix: 32), port: port) }
            return HTTPAllowEntry(target: .network(address, prefix: 128), port: port)
        }
        guard let name = OutboundPolicy.canonicalHostName(String(hostPart)) else {
            throw fail("\"\(hostPart.prefix(100))\" is not a host name (letters, digits, \"-\", \"_\" and \".\")")
        }
        if IPAddress.looksNumeric(name) { throw fail("\"\(name)\" looks like an IP address but is not a valid one") }
        return HTTPAllowEntry(target: .host(name), port: port)
    }

    /// Parses a comma-separated list (the form of `--http-allow` and `LEDGERFLOW_HTTP_ALLOW`).
    public static func parseList(_ text: String) throws(ParseError) -> [HTTPAllowEntry] {
        var entries: [HTTPAllowEntry] = []
        for piece in text.split(separator: ",") where !piece.allSatisfy({ $0 == " " || $0 == "\t" }) {
            entries.append(try parse(String(piece)))
        }
        return entries
    }
}

/// Where side-effecting actions may send: the exceptions an operator allows to the default refusals of
/// `http.request` (loopback, private, link-local and metadata addresses) and of `emit` (the engine's inbound
/// subjects). A pure value: resolution happens in the engine, which then asks `refusal(host:port:addresses:)`.
public struct OutboundPolicy: Sendable, Equatable {
    public var httpAllow: [HTTPAllowEntry]
    /// Subjects (wildcards allowed) `emit` may publish on although the engine consumes them.
    public var emitAllow: [String]

    public init(httpAllow: [HTTPAllowEntry] = [], emitAllow: [String] = []) {
        self.httpAllow = httpAllow
        self.emitAllow = emitAllow
    }

    /// `ledgerflow dev`'s default: its demo services listen on this machine.
    public static let loopback: [HTTPAllowEntry] = [
        HTTPAllowEntry(target: .host("localhost"), port: nil),
        HTTPAllowEntry(target: .network(.v4(0x7f00_0001), prefix: 32), port: nil),
        HTTPAllowEntry(target: .network(.v6(Array(repeating: 0, count: 15) + [1]), prefix: 128), port: nil),
    ]

    /// A host name lowercased without its trailing dot, or nil when it holds anything but letters, digits, "-",
    /// "_" and "." (or is empty, or longer than a DNS name can be).
    public static func canonicalHostName(_ host: String) -> String? {
        var name = host.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty, name.utf8.count <= 253, !name.hasPrefix("."), !name.contains(".."),
            name.unicodeScalars.allSatisfy({ s in
                (s >= "a" && s <= "z") || (s >= "0" && s <= "9") || s == "-" || s == "_" || s == "."
            })
        else { return nil }
        return name
    }

    /// Why a request to `host` (as written in the URL, canonical) on `port` may not connect to `addresses` (what
    /// it resolved to), or nil when it may. A host allowed by name may resolve to anything; otherwise every
    /// address must be public or allowed itself, so one private record among public ones still refuses.
    public func refusal(host: String, port: Int, addresses: [IPAddress]) -> String? {
        if httpAllow.contains(where: { ($0.port.map { $0 == port } ?? true) && $0.target == .host(host) }) { return nil }
        for address in addresses {
            guard let why = address.specialUse else { continue }
            let allowed = httpAllow.contains { entry in
                guard entry.port.map({ $0 == port }) ?? true, case .network(let network, let prefix) = entry.target else { return false }
                return address.isWithin(network, prefix: prefix)
            }
            if allowed { continue }
            let shown = IPAddress.parse(host) == nil ? "\(host) resolves to \(address.description)" : "\(address.description)"
            let example = IPAddress.parse(host) == nil ? "\(host):\(port)" : "\(address.urlHost):\(port)"
            return "\(shown), a \(why) address: http.request refuses loopback, private, link-local and metadata addresses "
                + "unless the engine allows the target. If this target is meant, start the engine with "
                + "--http-allow \(example) (or LEDGERFLOW_HTTP_ALLOW=\(example))"
        }
        return nil
    }
}

/// Which subjects `emit` may publish on. A pure function, used at definition validation and again at run time.
public enum EmitSubjectPolicy {
    public static let maxBytes = 256

    /// The engine's inbound subjects: publishing there would feed a run's own events back into the engine.
    public static let engineInbound = [Subjects.assistantCommandIssued, Subjects.calendarEvents, Subjects.flowRunRequest]

    /// Why `emit` may not publish on `subject`, or nil when it may. `allowed` lists inbound subjects the operator
    /// permits (`--emit-allow`); `checkInbound: false` skips that rule (definitions are checked before the engine's
    /// settings are known).
    public static func refusal(_ subject: String, allowed: [String] = [], checkInbound: Bool = true) -> String? {
        let shown = subject.count > 80 ? "\"\(subject.prefix(80))…\"" : "\"\(subject)\""
        if subject.isEmpty { return "the subject is empty: write the subject to publish on, e.g. orders.shipped" }
        if subject.utf8.count > maxBytes {
            return "the subject \(shown) is \(subject.utf8.count) bytes; a subject may be at most \(maxBytes) bytes"
        }
        if let bad = subject.unicodeScalars.first(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control || $0.properties.generalCategory == .format }) {
            return "the subject \(shown) holds a space or control character (U+\(String(bad.value, radix: 16, uppercase: true))); "
                + "a subject is tokens of visible characters separated by \".\""
        }
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        if tokens.contains(where: \.isEmpty) {
            return "the subject \(shown) has an empty token (a leading or trailing \".\", or \"..\"); write tokens separated by single dots"
        }
        if subject.contains("*") || subject.contains(">") {
            return "the subject \(shown) holds a wildcard (\"*\" or \">\"); a published event needs one concrete subject"
        }
        if subject.hasPrefix("$") {
            return "the subject \(shown) is a NATS system or API subject ($JS, $KV, $O, $SYS, ...); emit may not publish there, "
                + "choose an application subject such as orders.shipped"
        }
        if subject.uppercased().hasPrefix("_INBOX") {
            return "the subject \(shown) is a reply inbox (_INBOX...); emit may not answer other clients' requests, choose an application subject"
        }
        if tokens[0] == "ledger" {
            return "the subject \(shown) is under ledger.>, Ledgerflow's own log; emit may not write there, choose an application subject"
        }
        if checkInbound, let inbound = engineInbound.first(where: { subjectMatches(pattern: $0, subject: subject) }),
            !allowed.contains(where: { subjectMatches(pattern: $0, subject: subject) })
        {
            return "the subject \(shown) is one the engine consumes (\(inbound)), so the event would feed back into Ledgerflow; "
                + "choose another subject, or start the engine with --emit-allow \(subject) (or LEDGERFLOW_EMIT_ALLOW) if this is meant"
        }
        return nil
    }

    /// Checks an `--emit-allow` entry: a subject, wildcards allowed as whole tokens.
    public static func allowEntryProblem(_ entry: String) -> String? {
        let tokens = entry.split(separator: ".", omittingEmptySubsequences: false)
        if entry.isEmpty || tokens.contains(where: \.isEmpty) { return "emit allowlist entry \"\(entry)\" has an empty token" }
        if let bad = tokens.enumerated().first(where: { i, t in
            (t.contains("*") && t != "*") || (t.contains(">") && (t != ">" || i != tokens.count - 1))
        }) {
            return "emit allowlist entry \"\(entry)\": \"\(bad.element)\" is not a valid token (\"*\" and \">\" stand alone, \">\" last)"
        }
        if entry.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) {
            return "emit allowlist entry \"\(entry)\" holds a space or control character"
        }
        return nil
    }
}

/// Where the engine may send a reply to a request (`automation.flow.run`): the requester chooses the reply subject,
/// so it must not be a subject the log stores or a NATS API subject, or a request could write into the log (or
/// drive JetStream) with the engine's credentials.
public enum ReplySubjectPolicy {
    public static func refusal(_ subject: String) -> String? {
        let tokens = subject.split(separator: ".", omittingEmptySubsequences: false)
        if subject.isEmpty || subject.utf8.count > EmitSubjectPolicy.maxBytes || tokens.contains(where: \.isEmpty)
            || subject.contains("*") || subject.contains(">")
            || subject.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        {
            return "the reply subject is not a valid subject"
        }
        if subject.hasPrefix("$") { return "the reply subject is a NATS system or API subject" }
        if let stored = Subjects.streamSubjects.first(where: { subjectMatches(pattern: $0, subject: subject) }) {
            return "the reply subject is stored in the log (\(stored))"
        }
        return nil
    }
}

/// NATS subject matching with `*` and `>`.
public func subjectMatches(pattern: String, subject: String) -> Bool {
    let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
    let s = subject.split(separator: ".", omittingEmptySubsequences: false)
    for (i, token) in p.enumerated() {
        if token == ">" { return s.count > i }
        guard i < s.count else { return false }
        if token != "*" && token != s[i] { return false }
    }
    return p.count == s.count
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
