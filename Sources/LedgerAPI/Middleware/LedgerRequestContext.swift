public import Hummingbird
import LedgerCore
public import LedgerEngine

/// The request context of the API: Hummingbird's core context and the grant of the caller's bearer token.
public struct LedgerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `RequireRole`; nil on the public routes.
    public var grant: TokenGrant?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.grant = nil
    }

    /// The authenticated grant; a route behind `RequireRole` always has one.
    func requireGrant() throws -> TokenGrant {
        guard let grant else { throw Problem.unauthorized("The route needs a bearer token.") }
        return grant
    }
}
