import AsyncHTTPClient
import Dispatch
import Foundation
import LedgerCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `http.request` action. What it guarantees, whatever the definition, the trigger or the server does:
/// - the target's address is checked before connecting (`OutboundPolicy`: loopback, private, link-local and
///   metadata addresses are refused unless allowed), and the connection goes to the address that was checked,
///   so a DNS answer that changes between check and connect (rebinding) is not followed;
/// - redirects are not followed unless the step asks (`follow_redirects: true`), and then each hop is checked;
/// - no cookies are kept (AsyncHTTPClient has no cookie store);
/// - the response body is read as it arrives and abandoned as soon as it passes `Limits.stepOutputBytes`;
/// - the whole exchange (resolution, connection, every hop, the body) ends by the step's deadline.
final class HTTPAction: Sendable {
    static let maxRedirects = 5
    static let maxHeaders = 100
    static let maxHeaderValueBytes = 8 * 1024

    let policy: OutboundPolicy
    let breakers: CircuitBreakers<ContinuousClock>
    let logger: Logger
    /// Shared by every plain-HTTP request (connections are pooled per checked address). HTTPS requests use a client
    /// of their own pinned to the checked address (`dnsOverride` keeps the host name for SNI and certificate checks).
    let client: HTTPClient

    init(policy: OutboundPolicy, breakers: CircuitBreakers<ContinuousClock>, logger: Logger) {
        self.policy = policy
        self.breakers = breakers
        self.logger = logger
        self.client = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: Self.configuration(dnsOverride: [:]))
    }

    static func configuration(dnsOverride: [String: String]) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(30)),
            proxy: nil,
            decompression: .disabled)
        configuration.dnsOverride = dnsOverride
        return configuration
    }

    /// Closes the pooled connections (the engine calls it when it stops).
    func shutdown() async {
        try? await client.shutdown()
    }

    deinit {
        // An engine that was never run (or whose run threw) still releases its connections; shutting down twice is
        // answered with `alreadyShutdown`, which is fine here.
        client.shutdown { _ in }
    }

    // MARK: - The request

    /// What a step asked for, checked.
    struct Request: Sendable {
        var method: HTTPMethod
        var url: String
        var headers: [(name: String, value: String)]
        var body: [UInt8]?
        var expected: [Int]?
        var followRedirects: Bool
        /// Headers that carry a secret (lowercased): like credentials, never handed to another origin.
        var secretHeaders: Set<String> = []
    }

    /// The answer of the last hop.
    struct Outcome: Sendable {
        var status: Int
        var location: String?
        var body: [UInt8]
    }

    func perform(_ execution: StepExecution) async throws -> StepResult {
        let request = try Self.request(from: execution)
        let first = try Target(request.url)
        let breaker = "http.request:\(first.host):\(first.port)"
        if let refusal = breakers.refuse(breaker) {
            throw StepError(kind: .circuitOpen, message: refusal, retryable: true)
        }
        let what = "\(request.method.rawValue) \(request.url)"
        let remaining = execution.deadline.timeIntervalSinceNow
        guard remaining > 0 else {
            throw StepError(
                kind: .timeout, message: "\(what): the step's deadline had passed before the request started",
                retryable: true)
        }
        let outcome: Outcome
        do {
            outcome = try await Self.withDeadline(
                .now + .milliseconds(Int64(min(remaining, Limits.runTimeoutSeconds) * 1000)), what: what
            ) {
                try await self.exchange(
                    request, first: first,
                    deadline: .now() + .milliseconds(Int64(min(remaining, Limits.runTimeoutSeconds) * 1000)))
            }
        } catch let error as StepError {
            if error.kind == .unavailable || error.kind == .timeout { breakers.record(breaker, success: false) }
            throw error
        }
        breakers.record(breaker, success: outcome.status < 500)
        let ok = request.expected.map { $0.contains(outcome.status) } ?? (200..<300).contains(outcome.status)
        if !ok {
            let expected = request.expected.map { "one of \($0.map(String.init).joined(separator: ", "))" } ?? "2xx"
            var message = "\(what) answered \(outcome.status) (expected \(expected))"
            if (300..<400).contains(outcome.status), !request.followRedirects {
                message +=
                    "; redirects are not followed unless the step sets with.follow_redirects: true"
                    + (outcome.location.map { " (Location: \(String($0.prefix(200))))" } ?? "")
            }
            throw StepError(
                kind: .http(outcome.status), message: message,
                retryable: outcome.status >= 500 || outcome.status == 429 || outcome.status == 408)
        }
        return .success(["status": .number(Double(outcome.status)), "body": Self.bodyValue(outcome.body)])
    }

    /// The response body as JSON when it is JSON (within the depth inbound documents may have), else as text.
    static func bodyValue(_ bytes: [UInt8]) -> JSONValue {
        if let first = bytes.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }),
            first == UInt8(ascii: "{") || first == UInt8(ascii: "[") || first == UInt8(ascii: "\"")
                || first == UInt8(ascii: "-")
                || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) || first == UInt8(ascii: "t")
                || first == UInt8(ascii: "f")
                || first == UInt8(ascii: "n"),
            let value = try? JSONTree.parse(bytes), nesting(of: value, within: Limits.inboundJSONDepth)
        {
            return value
        }
        return .string(String(decoding: bytes, as: UTF8.self))
    }

    /// Whether `value` nests no deeper than `limit` (the output is embedded in events the log's readers must parse).
    static func nesting(of value: JSONValue, within limit: Int) -> Bool {
        guard limit >= 0 else { return false }
        switch value {
        case .array(let items): return items.allSatisfy { nesting(of: $0, within: limit - 1) }
        case .object(let fields): return fields.values.allSatisfy { nesting(of: $0, within: limit - 1) }
        default: return true
        }
    }

    /// Follows the exchange hop by hop: every target is checked before it is connected to.
    func exchange(_ request: Request, first: Target, deadline: NIODeadline) async throws -> Outcome {
        var target = first
        var method = request.method
        var body = request.body
        var headers = request.headers
        for hop in 0...Self.maxRedirects {
            let address = try await checkedAddress(target)
            let outcome = try await send(
                method: method, target: target, address: address, headers: headers, body: body,
                stopAtRedirect: request.followRedirects, deadline: deadline)
            guard request.followRedirects, [301, 302, 303, 307, 308].contains(outcome.status),
                let location = outcome.location
            else {
                return outcome
            }
            guard hop < Self.maxRedirects else {
                throw StepError(
                    kind: .tooManyRedirects,
                    message:
                        "\(request.method.rawValue) \(request.url) redirected more than \(Self.maxRedirects) times; call the final URL directly",
                    retryable: false)
            }
            guard let base = URL(string: target.url),
                let next = URL(string: location, relativeTo: base)?.absoluteURL.absoluteString
            else {
                throw StepError(
                    kind: .badRedirect,
                    message: "\(target.url) redirected to \"\(location.prefix(200))\", which is not a URL",
                    retryable: false)
            }
            let nextTarget: Target
            do {
                nextTarget = try Target(next)
            } catch {
                throw StepError(
                    kind: .badRedirect, message: "\(target.url) redirected to \(next.prefix(200)): \(error.message)",
                    retryable: false)
            }
            // 303, and 301/302 after a POST, continue as a GET without the body (as browsers and curl do).
            if outcome.status == 303 || ((outcome.status == 301 || outcome.status == 302) && method == .POST) {
                if method != .HEAD { method = .GET }
                body = nil
                headers.removeAll { $0.name.lowercased() == "content-type" }
            }
            // Credentials meant for one origin are not handed to another.
            if nextTarget.origin != target.origin {
                headers.removeAll {
                    ["authorization", "cookie", "proxy-authorization"].contains($0.name.lowercased())
                        || request.secretHeaders.contains($0.name.lowercased())
                }
            }
            logger.debug(
                "http.request follows a redirect",
                metadata: ["from": "\(target.url)", "to": "\(nextTarget.url)", "status": "\(outcome.status)"])
            target = nextTarget
        }
        preconditionFailure("the loop returns or throws on its last hop")
    }

    /// The address to connect to: the host's addresses are resolved and checked against the policy.
    func checkedAddress(_ target: Target) async throws -> IPAddress {
        let addresses: [IPAddress]
        if let literal = target.address {
            addresses = [literal]
        } else {
            addresses = try await HostResolver.resolve(target.host)
        }
        if let why = policy.refusal(host: target.host, port: target.port, addresses: addresses) {
            throw StepError(
                kind: .forbiddenAddress, message: "http.request to \(target.url) refused: \(why)", retryable: false)
        }
        guard
            let chosen = addresses.first(where: { if case .v4 = $0 { return true } else { return false } })
                ?? addresses.first
        else {
            throw StepError(kind: .unavailable, message: "\(target.host) has no address", retryable: true)
        }
        return chosen
    }

    func send(
        method: HTTPMethod, target: Target, address: IPAddress, headers: [(name: String, value: String)],
        body: [UInt8]?,
        stopAtRedirect: Bool, deadline: NIODeadline
    ) async throws -> Outcome {
        var request: HTTPClientRequest
        let client: HTTPClient
        let pinned: Bool
        if target.scheme == "https" && target.address == nil {
            // TLS needs the host name (SNI, certificate); the override makes the connection go to the checked address.
            request = HTTPClientRequest(url: target.url)
            client = HTTPClient(
                eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                configuration: Self.configuration(dnsOverride: [target.host: address.description]))
            pinned = true
        } else {
            request = HTTPClientRequest(
                url: "\(target.scheme)://\(address.urlHost):\(target.port)\(target.pathAndQuery)")
            client = self.client
            pinned = false
        }
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.replaceOrAdd(name: "Host", value: target.hostHeader)
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let outcome = try await receive(
                request, on: client, what: "\(method.rawValue) \(target.url)", stopAtRedirect: stopAtRedirect,
                deadline: deadline)
            if pinned { try? await client.shutdown() }
            return outcome
        } catch {
            if pinned { try? await client.shutdown() }
            throw Self.stepError(error, what: "\(method.rawValue) \(target.url)")
        }
    }

    func receive(
        _ request: HTTPClientRequest, on client: HTTPClient, what: String, stopAtRedirect: Bool, deadline: NIODeadline
    ) async throws -> Outcome {
        let response = try await client.execute(request, deadline: deadline, logger: logger)
        let status = Int(response.status.code)
        let location = response.headers.first(name: "location")
        if stopAtRedirect, location != nil, (300..<400).contains(status) {
            // Its body is not read: dropping it closes the connection.
            return Outcome(status: status, location: location, body: [])
        }
        let limit = Limits.stepOutputBytes
        if let declared = response.headers.first(name: "content-length").flatMap({ Int($0) }), declared > limit {
            throw Self.tooLarge(what, "declares Content-Length \(declared)")
        }
        var body: [UInt8] = []
        for try await chunk in response.body {
            guard body.count + chunk.readableBytes <= limit else {
                // Leaving the loop drops the stream: AsyncHTTPClient cancels the request and closes the connection.
                throw Self.tooLarge(
                    what,
                    "sent more than \(limit) bytes (Ledgerflow stopped reading at \(body.count + chunk.readableBytes))")
            }
            body.append(contentsOf: chunk.readableBytesView)
        }
        return Outcome(status: status, location: location, body: body)
    }

    static func tooLarge(_ what: String, _ detail: String) -> StepError {
        StepError(
            kind: .outputTooLarge,
            message: "the response of \(what) \(detail); a step's output is recorded in the log and may be at most "
                + "\(Limits.stepOutputBytes) bytes: ask the service for less (a page, a filter, fewer fields)",
            retryable: false)
    }

    static func stepError(_ error: any Error, what: String) -> any Error {
        switch error {
        case is StepError, is CancellationError:
            return error
        case let error as HTTPClientError where error == .deadlineExceeded:
            return StepError(
                kind: .timeout, message: "\(what) did not answer by the step's deadline (timeout_sec)", retryable: true)
        case let error as HTTPClientError where error == .cancelled:
            return CancellationError()
        default:
            return StepError(kind: .unavailable, message: "\(what) failed: \(error)", retryable: true)
        }
    }

    /// Runs `operation`, and throws `timeout` if it has not finished by `deadline` (it is cancelled then).
    static func withDeadline<T: Sendable>(
        _ deadline: ContinuousClock.Instant, what: String, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw StepError(
                    kind: .timeout, message: "\(what) did not complete by the step's deadline (timeout_sec)",
                    retryable: true)
            }
            return value
        }
    }
}
