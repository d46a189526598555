public import Hummingbird
import LedgerCore

/// Resolves `Authorization: Bearer <token>` to its grant and puts it on the context; 401 without a known token.
public struct BearerTokenAuthenticator: RouterMiddleware {
    public typealias Context = LedgerRequestContext
    let tokens: TokenStore

    public init(tokens: TokenStore) {
        self.tokens = tokens
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw Problem.unauthorized("Send Authorization: Bearer <token> (ledgerflow dev prints one).")
        }
        guard let grant = tokens.grant(for: String(header.dropFirst(7).drop { $0 == " " })) else {
            throw Problem.unauthorized("The token is not known to this server.")
        }
        var context = context
        context.grant = grant
        return try await next(request, context)
    }
}

/// Lets a request through only if its grant has `role` or a higher one; 403 otherwise. Goes behind
/// `BearerTokenAuthenticator`.
public struct RequireRole: RouterMiddleware {
    public typealias Context = LedgerRequestContext
    let role: Role

    public init(_ role: Role) {
        self.role = role
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        let grant = try context.requireGrant()
        guard grant.role >= role else {
            throw Problem(
                status: 403, code: "forbidden", title: "Forbidden",
                detail: "This needs the \(role.rawValue) role; the token has \(grant.role.rawValue).")
        }
        return try await next(request, context)
    }
}

extension Problem {
    static func unauthorized(_ detail: String) -> Problem {
        Problem(status: 401, code: "unauthorized", title: "Unauthorized", detail: detail)
    }
}
