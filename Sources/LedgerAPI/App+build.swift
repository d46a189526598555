public import Hummingbird
import LedgerCore
public import LedgerEngine
public import Logging

/// What the HTTP API stands on.
public struct APIDependencies: Sendable {
    public var ledger: Ledger
    public var store: ReadModelStore
    public var engine: Engine
    public var admin: FlowAdmin
    public var tokens: AccessTokens

    public init(ledger: Ledger, store: ReadModelStore, engine: Engine, tokens: AccessTokens) {
        self.ledger = ledger
        self.store = store
        self.engine = engine
        var admin = FlowAdmin(ledger: ledger, store: store)
        admin.registry = engine.configuration.registry
        self.admin = admin
        self.tokens = tokens
    }
}

/// Builds the Hummingbird application serving SPEC §4 on `host:port`.
public func buildApplication(
    _ deps: APIDependencies, host: String = "127.0.0.1", port: Int = 8080, logger: Logger
)
    -> some ApplicationProtocol
{
    Application(
        router: buildRouter(deps), configuration: .init(address: .hostname(host, port: port), serverName: "ledgerflow"),
        logger: logger)
}

/// The routes of SPEC §4 over the ledger, the read models and the engine.
public func buildRouter(_ deps: APIDependencies) -> Router<LedgerRequestContext> {
    buildRouter(
        flows: deps.admin, runs: deps.engine, queries: deps.store, audit: deps.store, log: deps.ledger,
        status: deps.engine, schedules: deps.engine, tokens: deps.tokens)
}

/// The routes of SPEC §4, one controller per resource, each over the narrow protocol it needs. Every route but
/// `/health` and `/ping` needs a bearer token; each controller puts its routes behind the role they need.
public func buildRouter(
    flows: some FlowRepository, runs: some RunService, queries: some RunQueries, audit: some AuditQueries,
    log: some LogStatus, status: some OperationsStatus, schedules: some ScheduleService, tokens: AccessTokens
) -> Router<LedgerRequestContext> {
    let router = Router(context: LedgerRequestContext.self)
    // First, so every request is counted: refused at the concurrency limit, unauthorized, or matching no route.
    router.add(middleware: HTTPMetricsMiddleware(factory: status.metrics.factory))
    router.add(middleware: ConcurrencyLimitMiddleware())
    let access = AccessControl(tokens: tokens)
    OperationsController(log: log, status: status, tokens: tokens).addRoutes(to: router, access: access)
    let automation = router.group("automation")
    FlowsController(flows: flows).addRoutes(to: automation.group("flows"), access: access)
    RunsController(service: runs, queries: queries, log: log).addRoutes(to: automation, access: access)
    DeadLettersController(queries: queries).addRoutes(to: automation.group("dlq"), access: access)
    AuditController(queries: audit).addRoutes(to: automation.group("audit"), access: access)
    SchedulesController(service: schedules).addRoutes(to: automation.group("schedules"), access: access)
    AutomationsController(flows: flows, service: runs, queries: queries).addRoutes(
        to: router.group("admin/api/automations"), access: access)
    return router
}
