import Foundation
import LedgerCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A URL's target, parsed strictly: only http and https, no credentials, a host that is either an address literal
/// (in any form, normalised) or a plain host name.
struct Target: Sendable {
    var scheme: String
    /// The canonical host name, or the address's text for a literal.
    var host: String
    var address: IPAddress?
    var port: Int
    var pathAndQuery: String

    var origin: String { "\(scheme)://\(host):\(port)" }
    var defaultPort: Int { scheme == "https" ? 443 : 80 }
    var urlHost: String { address?.urlHost ?? host }
    var hostHeader: String { port == defaultPort ? urlHost : "\(urlHost):\(port)" }
    var url: String { "\(scheme)://\(hostHeader)\(pathAndQuery)" }

    init(_ text: String) throws(StepError) {
        func bad(_ message: String) -> StepError {
            StepError(
                kind: .badRequest, message: "http.request url \"\(text.prefix(200))\": \(message)", retryable: false)
        }
        guard text.utf8.count <= 8192 else { throw bad("is longer than 8192 bytes") }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw bad(
                "is not a valid URL; write it as http(s)://host[:port]/path?query, with special characters percent-encoded"
            )
        }
        guard scheme == "http" || scheme == "https" else { throw bad("only http:// and https:// URLs can be called") }
        guard components.percentEncodedUser == nil, components.percentEncodedPassword == nil else {
            throw bad("credentials in the URL (user@host) are not sent; put them in with.headers (e.g. Authorization)")
        }
        guard var rawHost = components.percentEncodedHost, !rawHost.isEmpty else { throw bad("names no host") }
        if rawHost.hasPrefix("["), rawHost.hasSuffix("]") { rawHost = String(rawHost.dropFirst().dropLast()) }
        self.scheme = scheme
        if let address = IPAddress.parse(rawHost) {
            self.address = address
            self.host = address.description
        } else if rawHost.contains(":") {
            throw bad("\"\(rawHost.prefix(100))\" is not a valid IPv6 address (zones such as %eth0 are not allowed)")
        } else if let name = OutboundPolicy.canonicalHostName(rawHost) {
            guard !IPAddress.looksNumeric(name) else {
                throw bad("the host \"\(name)\" looks like an IP address but is not a valid one")
            }
            self.address = nil
            self.host = name
        } else {
            throw bad(
                "the host \"\(rawHost.prefix(100))\" is not a valid host name (letters, digits, \"-\", \"_\" and \".\")"
            )
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else { throw bad("the port must be from 1 to 65535") }
        self.port = port
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        self.pathAndQuery = path + (components.percentEncodedQuery.map { "?\($0)" } ?? "")
    }
}

/// Resolves host names with `getaddrinfo`, which blocks: it runs on a queue of its own, never on Swift's
/// cooperative pool, and a cancelled lookup stops being waited for (its thread finishes on its own).
enum HostResolver {
    static let queue = DispatchQueue(label: "ledgerflow.resolver", attributes: .concurrent)

    static func resolve(_ host: String) async throws -> [IPAddress] {
        let waiting = Mutex<(continuation: CheckedContinuation<[IPAddress], any Error>?, cancelled: Bool)>((nil, false))
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[IPAddress], any Error>) in
                let cancelledAlready = waiting.withLock { state -> Bool in
                    if state.cancelled { return true }
                    state.continuation = continuation
                    return false
                }
                if cancelledAlready {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                queue.async {
                    let result = lookup(host)
                    waiting.withLock { state in state.continuation.take() }?.resume(with: result)
                }
            }
        } onCancel: {
            waiting.withLock { state in
                state.cancelled = true
                return state.continuation.take()
            }?.resume(throwing: CancellationError())
        }
    }

    static func lookup(_ host: String) -> Result<[IPAddress], any Error> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let code = getaddrinfo(host, nil, &hints, &list)
        defer { if let list { freeaddrinfo(list) } }
        guard code == 0 else {
            let reason = String(cString: gai_strerror(code))
            return .failure(
                StepError(kind: .unavailable, message: "could not resolve \(host): \(reason)", retryable: true))
        }
        var addresses: [IPAddress] = []
        var next = list
        while let entry = next {
            if let address = entry.pointee.ai_addr {
                switch Int32(entry.pointee.ai_family) {
                case AF_INET:
                    let raw = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        $0.pointee.sin_addr.s_addr
                    }
                    addresses.append(.v4(UInt32(bigEndian: raw)))
                case AF_INET6:
                    var raw = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    addresses.append(.v6(withUnsafeBytes(of: &raw) { Array($0) }))
                default:
                    break
                }
            }
            next = entry.pointee.ai_next
        }
        if addresses.isEmpty {
            return .failure(
                StepError(kind: .unavailable, message: "\(host) has no IPv4 or IPv6 address", retryable: true))
        }
        return .success(Array(Set(addresses)).sorted { $0.description < $1.description })
    }
}
