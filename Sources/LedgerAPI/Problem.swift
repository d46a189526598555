import Foundation
public import Hummingbird
public import LedgerCore
import LedgerEngine

/// An RFC 9457 problem: `application/problem+json` with a stable `code` (SPEC §4).
public struct Problem: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var title: String
    public var detail: String
    public var errors: [ValidationProblem]?
    public var currentVersion: Int?
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, code: String, title: String, detail: String) {
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
    }

    struct Body: Encodable {
        var type: String
        var title: String
        var status: Int
        var detail: String
        var code: String
        var errors: [ValidationProblem]?
        var current_version: Int?
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Body(
            type: "https://ledgerflow.dev/problems/\(code)", title: title, status: Int(status.code), detail: detail, code: code,
            errors: errors, current_version: currentVersion)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(body))))
    }

    static func badRequest(_ detail: String) -> Problem { Problem(.badRequest, code: "bad_request", title: "Bad request", detail: detail) }

    static func from(_ error: EngineError) -> Problem {
        switch error {
        case .flowNotFound(let id):
            return Problem(.notFound, code: "flow_not_found", title: "Flow not found", detail: "No flow has the id \"\(id)\". List flows with GET /automation/flows.")
        case .runNotFound(let id):
            return Problem(.notFound, code: "run_not_found", title: "Run not found", detail: "No run has the id \"\(id)\".")
        case .flowExists(let id):
            return Problem(.conflict, code: "flow_exists", title: "Flow exists", detail: "A flow with the id \"\(id)\" exists; change it with PUT /automation/flows/\(id).")
        case .versionConflict(let current):
            var problem = Problem(.conflict, code: "version_conflict", title: "Version conflict", detail: "The flow was changed meanwhile: the current version is \(current). Base your change on it and send it again.")
            problem.currentVersion = current
            return problem
        case .invalidState(let text):
            return Problem(.conflict, code: "invalid_state", title: "Invalid state", detail: text)
        case .invalidDefinition(let problems):
            var problem = Problem(
                .unprocessableContent, code: "invalid_definition", title: "Invalid definition",
                detail: "The definition has \(problems.count) problem(s); see errors.")
            problem.errors = problems
            return problem
        case .badRequest(let text):
            return .badRequest(text)
        case .unavailable(let text):
            var problem = Problem(.serviceUnavailable, code: "unavailable", title: "Unavailable", detail: text + " Retry shortly.")
            problem.retryAfter = 1
            return problem
        }
    }
}
