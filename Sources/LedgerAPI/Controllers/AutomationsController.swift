public import Hummingbird
import LedgerCore
import LedgerEngine
import LedgerProjections

/// Seed 004's admin contract (`/admin/api/automations`) over the same flows and engine as `/automation/flows`: an
/// automation is a flow whose id is its `automation_key`; its `name` and `description` live in the definition.
/// Creating needs `admin` and is always `draft`; edits need the version they are based on; status changes only
/// through activate and deactivate; `execute` (operator) runs an active automation as an artificial signal and
/// answers with the run id, its steps with their status, and the errors.
public struct AutomationsController<Flows: FlowRepository, Service: RunService, Queries: RunQueries>: Sendable {
    let flows: Flows
    let service: Service
    let queries: Queries

    public init(flows: Flows, service: Service, queries: Queries) {
        self.flows = flows
        self.service = service
        self.queries = queries
    }

    /// Adds the routes to `group` (`/admin/api/automations`).
    public func addRoutes(to group: RouterGroup<LedgerRequestContext>, access: AccessControl) {
        group.group().add(middleware: access.require(.admin))
            .post(use: create)
            .put("{id}", use: update)
            .post("{id}/activate") { request, context in try await changeStatus(request, context, activate: true) }
            .post("{id}/deactivate") { request, context in try await changeStatus(request, context, activate: false) }
        group.group().add(middleware: access.require(.`operator`))
            .post("{id}/execute", use: execute)
    }

    static var createFields: Set<String> { ["automation_key", "name", "definition", "description", "status"] }
    static var updateFields: Set<String> { ["name", "definition", "description", "status", "version"] }
    static var executeFields: Set<String> { ["mode", "context", "idempotency_key", "on_behalf_of"] }

    func create(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let body = try await JSONExchange.body(request)
        guard case .object(let fields) = body else {
            throw Problem.badRequest("The body must be an object: {automation_key, name, definition, description?}.")
        }
        var problems = Self.unknownFields(fields, allowed: Self.createFields)
        if let status = fields["status"], status != .null, status.stringValue != FlowStatus.draft.rawValue {
            problems.append(
                ValidationProblem(
                    path: "status",
                    message:
                        "an automation is always created as draft (leave status out, then POST its activate route); \(status.compactJSON.prefix(40)) is refused"
                ))
        }
        guard let key = fields["automation_key"]?.stringValue, !key.isEmpty else {
            throw Problem.badRequest("automation_key is required: the automation's unique key (a slug).")
        }
        guard let name = fields["name"]?.stringValue, !name.isEmpty else {
            throw Problem.badRequest("name is required: the automation's readable name.")
        }
        guard case .object(var definition)? = fields["definition"] else {
            throw Problem.badRequest("definition is required: an object with trigger and steps.")
        }
        if let id = definition["id"], id.stringValue != key {
            problems.append(ValidationProblem(path: "definition.id", message: "must be the automation_key or absent"))
        }
        if !problems.isEmpty { throw Problem(.invalidDefinition(problems)) }
        definition["id"] = .string(key)
        definition["name"] = .string(name)
        if let description = fields["description"], description != .null {
            guard description.stringValue != nil else { throw Problem.badRequest("description must be a string.") }
            definition["description"] = description
        }
        let record = try await refusingAsProblem { try await flows.register(.object(definition), actor: grant.actor) }
        return try JSONExchange.response(.created, AutomationView(record))
    }

    func update(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let body = try await JSONExchange.body(request)
        guard case .object(let fields) = body else {
            throw Problem.badRequest("The body must be an object: {version, definition?, name?, description?}.")
        }
        let problems = Self.unknownFields(fields, allowed: Self.updateFields)
        if !problems.isEmpty { throw Problem(.invalidDefinition(problems)) }
        guard case .number(let n)? = fields["version"], let version = n.exactInt(in: 1...Int(Int32.max)) else {
            throw Problem.badRequest(
                "version is required: the version this change is based on (the automation's current version).")
        }
        guard let record = try flows.flow(id), let current = record.current?.definition.objectValue else {
            throw Problem(.flowNotFound(id))
        }
        var definition = current
        if let given = fields["definition"], given != .null {
            guard case .object(let object) = given else { throw Problem.badRequest("definition must be an object.") }
            if let givenID = object["id"], givenID.stringValue != id {
                throw Problem(
                    .invalidDefinition([
                        ValidationProblem(path: "definition.id", message: "must be the automation's key or absent")
                    ]))
            }
            definition = object
            definition["id"] = .string(id)
            // Name and description carry over unless the change gives them.
            for field in ["name", "description"] where object[field] == nil { definition[field] = current[field] }
        }
        for field in ["name", "description"] {
            if let value = fields[field], value != .null {
                guard value.stringValue != nil else { throw Problem.badRequest("\(field) must be a string.") }
                definition[field] = value
            }
        }
        if let status = fields["status"] { definition["status"] = status }
        let updated = try await refusingAsProblem {
            try await flows.update(id, .object(definition), basedOn: version, actor: grant.actor)
        }
        return try JSONExchange.response(.ok, AutomationView(updated))
    }

    func changeStatus(_ request: Request, _ context: LedgerRequestContext, activate: Bool) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let record = try await refusingAsProblem {
            activate
                ? try await flows.activate(id, actor: grant.actor) : try await flows.deactivate(id, actor: grant.actor)
        }
        return try JSONExchange.response(.ok, AutomationView(record))
    }

    /// Runs the automation (seed 004 §5): `{mode: dry_run|live_run, context?}` (also `idempotency_key`,
    /// `on_behalf_of`). Waits for the run to finish (at most 30 s, `?wait=false` not at all, `wait_sec` to bound
    /// it): 200 with the finished execution, else 202 with the run as it is.
    func execute(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let body = try await JSONExchange.body(request)
        guard case .object = body else {
            throw Problem.badRequest("The body must be an object: {mode: \"dry_run\"|\"live_run\", context?}.")
        }
        let unknown = (body.objectValue ?? [:]).keys.filter { !Self.executeFields.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw Problem.badRequest(
                "\(unknown.map { "\"\($0.prefix(40))\"" }.prefix(5).joined(separator: ", ")) is not a field of execute; send {mode, context?, idempotency_key?, on_behalf_of?}."
            )
        }
        // Waits by default (30 s); `wait=false` answers at once, `wait_sec` bounds the wait.
        let query = request.uri.queryParameters
        let wait: Duration? =
            query.get("wait") == nil && query.get("wait_sec") == nil
            ? .seconds(30) : try ManualRuns<Service, Queries>.wait(request, impliedByWaitSeconds: true)
        let runs = ManualRuns(service: service, queries: queries)
        let outcome = try await runs.start(
            flowID: id, body: body, inputField: "context", grant: grant, modeRequired: true,
            traceparent: request.headers.traceparent)
        var finished = false
        if let wait { finished = try await runs.finished(outcome.runID, within: wait) }
        let run = try queries.withRunJSON(outcome.runID) { try? JSONTree.decode(RunState.self, from: $0) } ?? nil
        var answer: [String: JSONValue] = [
            "run_id": .string(outcome.runID), "automation_key": .string(id),
            "mode": body["mode"] ?? .null, "duplicate": .bool(outcome.isDuplicate),
        ]
        if let run {
            answer["status"] = .string(run.status.rawValue)
            answer["signal_id"] = run.dedup_key.map(JSONValue.string) ?? .null
            answer["steps"] = .array(
                run.steps.map { step in
                    [
                        "step_id": .string(step.step_id), "status": .string(step.status.rawValue),
                        "attempts": .number(Double(step.attempts.count)),
                        "error": step.attempts.last?.error.map { .string($0.message) } ?? .null,
                    ]
                })
            var errors: [JSONValue] = run.steps.compactMap { step in
                guard step.status == .failed, let error = step.attempts.last?.error else { return nil }
                return ["step_id": .string(step.step_id), "message": .string(error.message)]
            }
            if let error = run.error { errors.append(["run": .string(error.message)]) }
            answer["errors"] = .array(errors)
            answer["output"] = run.output ?? .null
        }
        return try JSONExchange.response(finished ? .ok : .accepted, JSONValue.object(answer))
    }

    static func unknownFields(_ fields: [String: JSONValue], allowed: Set<String>) -> [ValidationProblem] {
        fields.keys.filter { !allowed.contains($0) }.sorted().map {
            ValidationProblem(
                path: $0, message: "is not a field of this request; use \(allowed.sorted().joined(separator: ", "))")
        }
    }
}

/// An automation as seed 004's routes answer it.
struct AutomationView: Encodable {
    var id: String
    var automation_key: String
    var name: String?
    var description: String?
    var status: FlowStatus
    var version: Int
    var active_version: Int?
    var definition: JSONValue
    var created_at: String
    var updated_at: String

    init(_ record: FlowRecord) {
        let definition = record.current?.definition ?? .null
        id = record.flow_id
        automation_key = record.flow_id
        name = definition["name"]?.stringValue
        description = definition["description"]?.stringValue
        status = record.status
        version = record.current_version
        active_version = record.active_version
        self.definition = definition
        created_at = record.created_at
        updated_at = record.updated_at
    }
}
