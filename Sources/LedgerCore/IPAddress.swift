import Foundation

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
        func v4(_ at: Int) -> UInt32 {
            UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
        }
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
