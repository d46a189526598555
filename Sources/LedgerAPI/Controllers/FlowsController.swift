public import Hummingbird
import LedgerCore
import LedgerEngine
import LedgerProjections

/// `/automation/flows`: register, change, (de)activate and read flow definitions.
public struct FlowsController<Flows: FlowRepository>: Sendable {
    let flows: Flows

    public init(flows: Flows) {
        self.flows = flows
    }

    /// Adds the routes to `group` (the flows' path): reading needs `viewer`,
    /// every change `admin`.
    public func addRoutes(to group: RouterGroup<LedgerRequestContext>, access: AccessControl) {
        group.group().add(middleware: access.require(.viewer))
            .get(use: list)
            .get("{id}", use: get)
            .get("{id}/versions", use: versions)
        group.group().add(middleware: access.require(.admin))
            .post(use: register)
            .put("{id}", use: update)
            .post("{id}/activate") { request, context in try await activate(request, context, active: true) }
            .post("{id}/deactivate") { request, context in try await activate(request, context, active: false) }
    }

    func register(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let definition = try await JSONExchange.body(request)
        let record = try await refusingAsProblem { try await flows.register(definition, actor: grant.actor) }
        return try JSONExchange.response(.created, try FlowView(record))
    }

    func update(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let definition = try await JSONExchange.body(request)
        let basedOn: Int?
        switch definition["version"] {
        case nil, .null?: basedOn = nil
        case .number(let n)?:
            guard let v = n.exactInt(in: 1...Int(Int32.max)) else {
                throw Problem(
                    status: 400, code: "bad_request", title: "Bad version",
                    detail:
                        "\"version\" must be a whole number from 1 to \(Int32.max): the version this change is based on (the flow's current_version)."
                )
            }
            basedOn = v
        default:
            throw Problem(
                status: 400, code: "bad_request", title: "Bad version",
                detail:
                    "\"version\" must be a number: the version this change is based on (the flow's current_version).")
        }
        let record = try await refusingAsProblem {
            try await flows.update(id, definition, basedOn: basedOn, actor: grant.actor)
        }
        return try JSONExchange.response(.ok, try FlowView(record))
    }

    func activate(_ request: Request, _ context: LedgerRequestContext, active: Bool) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let record = try await refusingAsProblem {
            active
                ? try await flows.activate(id, actor: grant.actor)
                : try await flows.deactivate(id, actor: grant.actor)
        }
        return try JSONExchange.response(.ok, try FlowView(record))
    }

    func get(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let record = try flow(context)
        let version = request.uri.queryParameters.get("version", as: Int.self)
        return try JSONExchange.response(.ok, try FlowView(record, version: version))
    }

    func list(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let summaries = try flows.flows().map(FlowSummary.init)
        return try JSONExchange.response(.ok, ["flows": summaries])
    }

    func versions(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        try JSONExchange.response(.ok, VersionHistory(try flow(context)))
    }

    /// The flow named by the `id` path parameter; 404 if there is none.
    func flow(_ context: LedgerRequestContext) throws -> FlowRecord {
        let id = try context.parameters.require("id")
        guard let record = try flows.flow(id) else { throw Problem(.flowNotFound(id)) }
        return record
    }
}

/// One version of a flow as the API answers it.
struct FlowView: Encodable {
    var id: String
    var version: Int
    var current_version: Int
    var status: FlowStatus
    var active_version: Int?
    var definition: JSONValue
    var definition_hash: String
    var created_at: String
    var updated_at: String

    init(_ record: FlowRecord, version: Int? = nil) throws {
        let n = version ?? record.current_version
        guard let entry = record.version(n) else {
            throw Problem(
                status: 404, code: "flow_not_found", title: "Version not found",
                detail: "Flow \(record.flow_id) has versions 1 to \(record.current_version).")
        }
        self.id = record.flow_id
        self.version = entry.version
        self.current_version = record.current_version
        self.status = record.status
        self.active_version = record.active_version
        self.definition = entry.definition
        self.definition_hash = entry.definition_hash
        self.created_at = record.created_at
        self.updated_at = record.updated_at
    }
}

struct FlowSummary: Encodable {
    var id: String
    var name: String?
    var status: FlowStatus
    var version: Int
    var active_version: Int?
    var updated_at: String

    init(_ record: FlowRecord) {
        id = record.flow_id
        name = record.current?.definition["name"]?.stringValue
        status = record.status
        version = record.current_version
        active_version = record.active_version
        updated_at = record.updated_at
    }
}

struct VersionHistory: Encodable {
    struct Version: Encodable {
        var version: Int
        var actor: String
        var created_at: String
        var based_on: Int?
        var definition_hash: String
    }

    var id: String
    var current_version: Int
    var versions: [Version]
    var history: [FlowChange]

    init(_ record: FlowRecord) {
        id = record.flow_id
        current_version = record.current_version
        versions = record.versions.map {
            Version(
                version: $0.version, actor: $0.actor, created_at: $0.created_at, based_on: $0.based_on,
                definition_hash: $0.definition_hash)
        }
        history = record.history
    }
}
