public import Hummingbird
import LedgerCore
public import LedgerEngine

/// Puts a route group behind a bearer token with at least `role`: resolves `Authorization: Bearer <token>` to its
/// grant and puts it on the context; 401 without a known token, 403 without the role. One middleware does both,
/// so a request pays one hop (and one SHA-256) for its access check.
public struct RequireRole: RouterMiddleware {
    public typealias Context = LedgerRequestContext
    let tokens: AccessTokens
    let role: Role

    public init(_ role: Role, tokens: AccessTokens) {
        self.role = role
        self.tokens = tokens
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        guard let token = AccessTokens.bearer(request.headers[.authorization]) else {
            throw Problem.unauthorized("Send Authorization: Bearer <token> (ledgerflow dev prints one).")
        }
        guard let grant = tokens.grant(for: token) else {
            throw Problem.unauthorized("The token is not known to this server.")
        }
        guard grant.role >= role else {
            throw Problem.forbidden(needs: role.rawValue, has: grant.role.rawValue)
        }
        var context = context
        context.grant = grant
        return try await next(request, context)
    }
}

/// How the controllers put their route groups behind a role.
public struct AccessControl: Sendable {
    let tokens: AccessTokens

    public init(tokens: AccessTokens) {
        self.tokens = tokens
    }

    /// The middleware that lets through only callers with `role` or a higher one.
    public func require(_ role: Role) -> RequireRole {
        RequireRole(role, tokens: tokens)
    }
}
