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

/// Reading the step's `with` into a request: method, URL, headers, body, timeout, redirects, expected status.
extension HTTPAction {
    static func request(from execution: StepExecution) throws(StepError) -> Request {
        let with = execution.request
        func bad(_ message: String) -> StepError { StepError(kind: .badRequest, message: message, retryable: false) }
        guard let url = with["url"]?.stringValue else {
            throw bad("http.request needs with.url: the http:// or https:// URL to call")
        }
        let methodText = (with["method"] ?? "GET").stringValue?.uppercased() ?? ""
        guard (1...20).contains(methodText.count),
            methodText.unicodeScalars.allSatisfy({ ($0 >= "A" && $0 <= "Z") || $0 == "-" })
        else {
            throw bad("with.method must be an HTTP method such as GET, POST, PUT, PATCH or DELETE")
        }
        if methodText == "CONNECT" || methodText == "TRACE" {
            throw bad("with.method \(methodText) is not supported; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")
        }
        var headers: [(name: String, value: String)] = []
        var hasContentType = false
        switch with["headers"] {
        case nil, .null?:
            break
        case .object(let fields)?:
            guard fields.count <= maxHeaders else {
                throw bad("with.headers has \(fields.count) headers; at most \(maxHeaders) are sent")
            }
            for name in fields.keys.sorted() {
                let value = fields[name]!
                guard isToken(name), name.utf8.count <= 256 else {
                    throw bad(
                        "with.headers: \"\(name.prefix(60))\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
                    )
                }
                switch name.lowercased() {
                case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
                    "keep-alive", "proxy-connection":
                    throw bad("with.headers.\(name) is set by Ledgerflow (from the URL and the body); remove it")
                case "idempotency-key":
                    throw bad(
                        "with.headers.Idempotency-Key is set by Ledgerflow (the step's idempotency key); remove it")
                case "ledgerflow-on-behalf-of":
                    throw bad(
                        "with.headers.Ledgerflow-On-Behalf-Of is set by Ledgerflow (the run's user or service); remove it"
                    )
                case "content-type":
                    hasContentType = true
                default:
                    break
                }
                let text: String
                switch value {
                case .string(let s): text = s
                case .number, .bool: text = value.compactJSON
                default: throw bad("with.headers.\(name) must be a string, a number or a boolean")
                }
                guard text.utf8.count <= maxHeaderValueBytes else {
                    throw bad(
                        "with.headers.\(name) is \(text.utf8.count) bytes; a header value may be at most \(maxHeaderValueBytes) bytes"
                    )
                }
                guard !text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                    throw bad(
                        "with.headers.\(name) holds a line break or NUL, which would end the header; remove it from the value"
                    )
                }
                headers.append((name, text))
            }
        case .some:
            throw bad("with.headers must be an object of header names to values")
        }
        headers.append(("Idempotency-Key", execution.idempotencyKey))
        // The attempt's trace context: the receiving service's spans nest under the step's (it replaces one the
        // definition sets).
        if let traceparent = execution.traceparent {
            headers.removeAll { $0.name.lowercased() == "traceparent" }
            headers.append(("traceparent", traceparent))
        }
        // Whose behalf the call is made on: the run's user for a `run_as: user` flow, else the service.
        if let user = execution.onBehalfOf["user_id"]?.stringValue {
            let printable = String(
                String.UnicodeScalarView(
                    user.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }.prefix(256)))
            headers.append(("Ledgerflow-On-Behalf-Of", "user:\(printable)"))
        } else if let service = execution.onBehalfOf["service"]?.stringValue {
            headers.append(("Ledgerflow-On-Behalf-Of", "service:\(service)"))
        }
        var body: [UInt8]?
        switch with["body"] {
        case nil, .null?:
            break
        case .string(let text)?:
            body = Array(text.utf8)
        case .some(let value):
            body = Array(value.compactJSON.utf8)
            if !hasContentType { headers.append(("Content-Type", "application/json")) }
        }
        var expected: [Int]?
        if let value = with["expected_status"], value != .null {
            let values: [JSONValue]
            if case .array(let list) = value { values = list } else { values = [value] }
            expected = []
            for v in values {
                guard let status = v.numberValue?.exactInt(in: 100...599) else {
                    throw bad(
                        "with.expected_status must be a status code from 100 to 599 or a list of them, not \(v.compactJSON.prefix(40))"
                    )
                }
                expected?.append(status)
            }
        }
        let follow: Bool
        switch with["follow_redirects"] {
        case nil, .null?: follow = false
        case .bool(let b)?: follow = b
        case .some: throw bad("with.follow_redirects must be true or false")
        }
        return Request(
            method: HTTPMethod(rawValue: methodText), url: url, headers: headers, body: body, expected: expected,
            followRedirects: follow, secretHeaders: Set(execution.secretHeaders.map { $0.lowercased() }))
    }

    static func isToken(_ name: String) -> Bool {
        !name.isEmpty
            && name.unicodeScalars.allSatisfy { s in
                (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9")
                    || "!#$%&'*+-.^_`|~".unicodeScalars.contains(s)
            }
    }
}
