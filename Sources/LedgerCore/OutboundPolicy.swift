#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One entry of the outbound HTTP allowlist: `HOST[:PORT]`, where HOST is a host name, an IP address or a network
/// in CIDR notation (`10.1.0.0/16`); IPv6 with a port in brackets (`[::1]:8080`).
public struct HTTPAllowEntry: Sendable, Equatable, CustomStringConvertible {
    /// What an entry allows: one host name, or every address of a network.
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

    /// Why an allowlist entry cannot be read.
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
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw fail("the port must be a number from 1 to 65535")
            }
            port = value
        }
        if let slash = hostPart.firstIndex(of: "/") {
            guard let address = IPAddress.parse(String(hostPart[..<slash])) else {
                throw fail("a network must start with an IP address")
            }
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
        if httpAllow.contains(where: { ($0.port.map { $0 == port } ?? true) && $0.target == .host(host) }) {
            return nil
        }
        for address in addresses {
            guard let why = address.specialUse else { continue }
            let allowed = httpAllow.contains { entry in
                guard entry.port.map({ $0 == port }) ?? true, case .network(let network, let prefix) = entry.target
                else { return false }
                return address.isWithin(network, prefix: prefix)
            }
            if allowed { continue }
            let shown =
                IPAddress.parse(host) == nil ? "\(host) resolves to \(address.description)" : "\(address.description)"
            let example = IPAddress.parse(host) == nil ? "\(host):\(port)" : "\(address.urlHost):\(port)"
            return
                "\(shown), a \(why) address: http.request refuses loopback, private, link-local and metadata addresses "
                + "unless the engine allows the target. If this target is meant, start the engine with "
                + "--http-allow \(example) (or LEDGERFLOW_HTTP_ALLOW=\(example))"
        }
        return nil
    }
}
