import Foundation
import Hummingbird
import LedgerCore
import LedgerEngine

/// JSON in and out of the controllers, the way every route reads and answers it.
enum JSONExchange {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static func response(_ status: HTTPResponse.Status = .ok, _ value: some Encodable) throws -> Response {
        response(status, bytes: try encoder.encode(value))
    }

    static func response(_ status: HTTPResponse.Status = .ok, bytes: some Collection<UInt8>) -> Response {
        Response(status: status, headers: jsonHeaders, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// Built once: every JSON answer carries the same header.
    static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    /// The body as JSON; 400 unless it is usable JSON.
    static func body(_ request: Request) async throws -> JSONValue {
        let buffer = try await collect(request)
        do {
            return try JSONTree.parse(buffer.readableBytesView, maxDepth: Limits.inboundJSONDepth)
        } catch {
            throw Problem.badRequest(
                "The body is not usable JSON (\(buffer.readableBytes) bytes): \(error). Send one JSON object, nested at most \(Limits.inboundJSONDepth) levels."
            )
        }
    }

    /// The body as a JSON object, `{}` when empty; 400 otherwise.
    static func optionalObject(_ request: Request) async throws -> JSONValue {
        let buffer = try await collect(request)
        if buffer.readableBytes == 0 { return .object([:]) }
        guard let value = try? JSONTree.parse(buffer.readableBytesView, maxDepth: Limits.inboundJSONDepth),
            case .object = value
        else {
            throw Problem.badRequest(
                "The body must be a JSON object (or empty), nested at most \(Limits.inboundJSONDepth) levels.")
        }
        return value
    }

    /// The whole body, up to what the log takes in one message; 413 `too_large` (a problem, like every refusal)
    /// past it.
    static func collect(_ request: Request) async throws -> ByteBuffer {
        var request = request
        do {
            return try await request.collectBody(upTo: Limits.streamMessageBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            // NIO's "too many bytes", which Hummingbird would answer 413 with no body.
            throw Problem(
                status: 413, code: "too_large", title: "Body too large",
                detail:
                    "The body is larger than the \(Limits.streamMessageBytes) bytes this server reads; send less data.")
        }
    }

    /// An optional string field of at most `limit` bytes.
    static func shortString(_ body: JSONValue, _ field: String, limit: Int = Limits.identifierBytes) throws -> String? {
        switch body[field] {
        case nil, .null?: return nil
        case .string(let text)? where text.utf8.count <= limit: return text
        case .string(let text)?:
            throw Problem.badRequest("\(field) is \(text.utf8.count) bytes; at most \(limit) are accepted.")
        default: throw Problem.badRequest("\(field) must be a string.")
        }
    }

    /// A bounded `limit` query parameter.
    static func limit(_ request: Request, default value: Int) -> Int {
        min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? value, 1), 1000)
    }
}

/// Runs a call into the engine or the ledger, turning its refusal into the problem SPEC §4 answers.
func refusingAsProblem<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        if let problem = Problem(refusal: error) { throw problem }
        throw error
    }
}
