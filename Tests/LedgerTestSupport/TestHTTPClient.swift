public import Foundation
public import LedgerCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The one HTTP client of the tests and the benchmarks: requests to a Ledgerflow API (or any loopback service) with
/// a bearer token, answers as JSON or as text.
public struct TestHTTPClient: Sendable {
    public let base: String
    /// Sent as `Authorization: Bearer …` unless a request says otherwise.
    public let token: String?
    public var timeout: TimeInterval

    public init(base: String, token: String? = nil, timeout: TimeInterval = 10) {
        self.base = base
        self.token = token
        self.timeout = timeout
    }

    public init(port: Int, token: String? = nil, timeout: TimeInterval = 10) {
        self.init(base: "http://127.0.0.1:\(port)", token: token, timeout: timeout)
    }

    /// The token a request carries: the client's by default, none with `nil`, or the one given.
    public enum Token: Sendable, ExpressibleByStringLiteral, ExpressibleByNilLiteral {
        case client
        case none
        case bearer(String)
        public init(stringLiteral value: String) { self = .bearer(value) }
        public init(nilLiteral: ()) { self = .none }
    }

    /// Sends `body` as JSON (with `headers` besides the token's); answers the status and the body as JSON (a string
    /// when it is not JSON).
    public func json(
        _ method: String, _ path: String, _ body: JSONValue? = nil, token: Token = .client,
        headers: [String: String] = [:]
    ) async throws -> (Int, JSONValue) {
        let (status, data, _) = try await exchange(
            method, path, body.map { Array($0.compactJSON.utf8) }, json: body != nil, token: token, headers: headers)
        return (
            status,
            (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self))
        )
    }

    /// As `json`, with the answer's headers too.
    public func jsonWithHeaders(
        _ method: String, _ path: String, _ body: JSONValue? = nil, token: Token = .client
    ) async throws -> (Int, JSONValue, [String: String]) {
        let (status, data, headers) = try await exchange(
            method, path, body.map { Array($0.compactJSON.utf8) }, json: body != nil, token: token)
        return (
            status,
            (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self)),
            headers
        )
    }

    /// Sends raw bytes (not necessarily JSON); answers the status and the body's text.
    public func text(
        _ method: String, _ path: String, _ body: [UInt8]? = nil, token: Token = .client
    ) async throws -> (Int, String) {
        let (status, data) = try await send(method, path, body, json: false, token: token)
        return (status, String(decoding: data, as: UTF8.self))
    }

    /// The status of `GET path`, or nil when nothing answers.
    public func status(_ path: String) async -> Int? {
        try? await send("GET", path, nil, json: false, token: .none).0
    }

    func send(_ method: String, _ path: String, _ body: [UInt8]?, json: Bool, token: Token) async throws -> (Int, Data)
    {
        let (status, data, _) = try await exchange(method, path, body, json: json, token: token)
        return (status, data)
    }

    func exchange(
        _ method: String, _ path: String, _ body: [UInt8]?, json: Bool, token: Token, headers: [String: String] = [:]
    ) async throws -> (Int, Data, [String: String]) {
        guard let url = URL(string: base + path) else { return (400, Data("bad url".utf8), [:]) }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = timeout
        let bearer: String?
        switch token {
        case .client: bearer = self.token
        case .none: bearer = nil
        case .bearer(let value): bearer = value
        }
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.httpBody = Data(body)
            if json { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            if let key = key as? String, let value = value as? String { headers[key] = value }
        }
        return (http.statusCode, data, headers)
    }
}
