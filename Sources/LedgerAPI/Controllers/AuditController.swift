import Foundation
public import Hummingbird
import LedgerCore
import LedgerEngine
import LedgerProjections

/// `/automation/audit`: the audit trail, newest first (`viewer`).
public struct AuditController<Queries: AuditQueries>: Sendable {
    let queries: Queries

    public init(queries: Queries) {
        self.queries = queries
    }

    public func addRoutes(to group: RouterGroup<LedgerRequestContext>, access: AccessControl) {
        group.group().add(middleware: access.require(.viewer))
            .get(use: list)
    }

    /// `?flow_id=&actor=&since=&limit=`: `actor` is an id or `type:id`; `since` an RFC 3339 time with its offset.
    func list(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        var since: Date?
        if let text = query.get("since") {
            guard let date = Timestamp.parse(text) else {
                throw Problem.badRequest(
                    "since must be an RFC 3339 time with its offset, such as 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00."
                )
            }
            since = date
        }
        let entries = try queries.audit(
            flowID: query.get("flow_id"), actor: query.get("actor"), since: since,
            limit: JSONExchange.limit(request, default: 100))
        return try JSONExchange.response(.ok, ["entries": entries])
    }
}
