/// An RFC 9457 problem with a stable `code` (SPEC §4): why a request was refused, answered over HTTP and NATS alike.
public struct Problem: Error, Sendable, Equatable {
    /// The HTTP status the problem is answered with (and the `status` member of its JSON).
    public var statusCode: Int
    public var code: String
    public var title: String
    public var detail: String
    /// Every validation problem of a definition (`invalid_definition`).
    public var errors: [ValidationProblem]?
    /// The flow's current version (`version_conflict`).
    public var currentVersion: Int?
    /// Seconds after which a retry may succeed (`unavailable`); HTTP sends it as `Retry-After`.
    public var retryAfter: Int?

    public init(status: Int, code: String, title: String, detail: String) {
        self.statusCode = status
        self.code = code
        self.title = title
        self.detail = detail
    }

    /// The request cannot be understood as sent.
    public static func badRequest(_ detail: String) -> Problem {
        Problem(status: 400, code: "bad_request", title: "Bad request", detail: detail)
    }

    /// No token, or one the server does not know.
    public static func unauthorized(_ detail: String) -> Problem {
        Problem(status: 401, code: "unauthorized", title: "Unauthorized", detail: detail)
    }

    /// A known token without the role the request needs.
    public static func forbidden(needs role: String, has: String, to what: String = "This") -> Problem {
        Problem(
            status: 403, code: "forbidden", title: "Forbidden",
            detail: "\(what) needs the \(role) role; the token has \(has).")
    }

    /// Something the request needs is not reachable now; worth retrying in a second.
    public static func unavailable(title: String = "Unavailable", _ detail: String) -> Problem {
        var problem = Problem(status: 503, code: "unavailable", title: title, detail: detail)
        problem.retryAfter = 1
        return problem
    }

    /// The problem object: `type`, `title`, `status`, `detail`, `code`, and `errors` / `current_version` when set.
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "type": .string("https://ledgerflow.dev/problems/\(code)"), "title": .string(title),
            "status": .number(Double(statusCode)), "detail": .string(detail), "code": .string(code),
        ]
        if let errors {
            object["errors"] = .array(errors.map { ["path": .string($0.path), "message": .string($0.message)] })
        }
        if let currentVersion { object["current_version"] = .number(Double(currentVersion)) }
        return .object(object)
    }
}
