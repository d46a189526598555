public import Hummingbird
import LedgerCore
import LedgerEngine

/// `/automation/runs` and a flow's `run`: start, read, list, cancel and redrive runs.
public struct RunsController<Service: RunService, Queries: RunQueries, Log: LogStatus>: Sendable {
    let service: Service
    let queries: Queries
    let log: Log
    /// How long an answer waits for the read models to show a run that was just accepted.
    let visibilityWait: Duration = .seconds(2)

    public init(service: Service, queries: Queries, log: Log) {
        self.service = service
        self.queries = queries
        self.log = log
    }

    /// Adds the routes to `group` (`/automation`): reading needs `viewer`; running,
    /// cancelling and redriving `operator`.
    public func addRoutes(to group: RouterGroup<LedgerRequestContext>, access: AccessControl) {
        group.group("runs").add(middleware: access.require(.viewer))
            .get(use: list)
            .get("{runId}", use: get)
        group.group().add(middleware: access.require(.`operator`))
            .post("flows/{id}/run", use: run)
            .post("runs/{runId}/cancel", use: cancel)
            .post("runs/{runId}/redrive", use: redrive)
    }

    func run(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let body = try await JSONExchange.body(request)
        guard case .object = body else {
            throw Problem.badRequest("The body must be an object: {input, mode, idempotency_key?}.")
        }
        let mode: RunMode
        switch body["mode"]?.stringValue ?? "live_run" {
        case "live_run": mode = .live
        case "dry_run": mode = .dry
        case let other: throw Problem.badRequest("mode must be live_run or dry_run, not \(other).")
        }
        let input = body["input"] ?? .object([:])
        guard case .object = input else { throw Problem.badRequest("input must be an object.") }
        let key = try JSONExchange.shortString(body, "idempotency_key")
        let outcome = try await refusingAsProblem {
            try await service.requestRun(
                flowID: id, input: input, mode: mode, idempotencyKey: key, actor: grant.subject)
        }
        if case .started(_, let sequence) = outcome {
            _ = await queries.waitForPosition(sequence, timeout: visibilityWait)
        }
        var answer: [String: JSONValue] = ["run_id": .string(outcome.runID)]
        if case .duplicate = outcome { answer["duplicate"] = true }
        return try JSONExchange.response(.accepted, JSONValue.object(answer))
    }

    func get(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let id = try context.parameters.require("runId")
        // The stored JSON is the answer: copied once, straight from the LMDB page into the response buffer.
        func lookup() throws -> Response? {
            try queries.withRunJSON(id) { raw in JSONExchange.response(.ok, bytes: raw) }
        }
        if let response = try lookup() { return response }
        // Just accepted? Wait briefly for the read models to reach the end of the log as it is now.
        if let end = try? await log.lastSequence(), end > queries.position {
            _ = await queries.waitForPosition(end, timeout: visibilityWait)
            if let response = try lookup() { return response }
        }
        throw Problem(.runNotFound(id))
    }

    func list(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let runs = try queries.runs(
            flowID: query.get("flow_id"), status: query.get("status"), limit: JSONExchange.limit(request, default: 50))
        return try JSONExchange.response(.ok, ["runs": runs])
    }

    func cancel(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("runId")
        let body = try await JSONExchange.optionalObject(request)
        let reason = try JSONExchange.shortString(body, "reason", limit: Limits.reasonBytes)
        try await refusingAsProblem { try await service.cancelRun(id, actor: grant.subject, reason: reason) }
        return try JSONExchange.response(.accepted, ["run_id": JSONValue.string(id), "status": "CANCELLING"])
    }

    func redrive(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("runId")
        let body = try await JSONExchange.optionalObject(request)
        let fromStep = try JSONExchange.shortString(body, "from_step")
        try await refusingAsProblem { try await service.redriveRun(id, fromStep: fromStep, actor: grant.subject) }
        return try JSONExchange.response(.accepted, ["run_id": JSONValue.string(id)])
    }
}
