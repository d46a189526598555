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
            throw Problem.badRequest("The body must be an object: {input, mode, idempotency_key?, on_behalf_of?}.")
        }
        return try await startManualRun(
            flowID: id, body: body, inputField: "input", grant: grant,
            wait: try ManualRuns<Service, Queries>.wait(request), traceparent: request.headers.traceparent)
    }

    /// A manual run (SPEC's `run`): 202 with the run id, or with `wait` the run once finished (200), or as it is
    /// when the wait ends first (202).
    func startManualRun(
        flowID: String, body: JSONValue, inputField: String, grant: TokenGrant, wait: Duration?, traceparent: String?
    ) async throws -> Response {
        let outcome = try await ManualRuns(service: service, queries: queries).start(
            flowID: flowID, body: body, inputField: inputField, grant: grant, traceparent: traceparent)
        if let wait {
            let finished = try await ManualRuns(service: service, queries: queries).finished(
                outcome.runID, within: wait)
            if let current = try queries.withRunJSON(
                outcome.runID, { JSONExchange.response(finished ? .ok : .accepted, bytes: $0) })
            {
                return current
            }
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

    /// After a command was recorded: waits (briefly) until the read models include the end of the log as it is
    /// now, so a `GET` right after the answer shows the change.
    func readYourWrite() async {
        if let end = try? await log.lastSequence(), end > queries.position {
            _ = await queries.waitForPosition(end, timeout: visibilityWait)
        }
    }

    func list(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        // `{"runs":[...]}` around the stored JSON of each run, copied once from the LMDB pages into the response
        // buffer (as `get` answers one run).
        let buffer = try queries.withRunsJSON(
            flowID: query.get("flow_id"), status: query.get("status"), limit: JSONExchange.limit(request, default: 50)
        ) { runs in
            var buffer = ByteBuffer()
            buffer.reserveCapacity(runs.reduce(11) { $0 + $1.count + 1 })
            buffer.writeStaticString("{\"runs\":[")
            for (index, run) in runs.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                buffer.writeBytes(run)
            }
            buffer.writeStaticString("]}")
            return buffer
        }
        return Response(status: .ok, headers: JSONExchange.jsonHeaders, body: .init(byteBuffer: buffer))
    }

    func cancel(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("runId")
        let body = try await JSONExchange.optionalObject(request)
        let reason = try JSONExchange.shortString(body, "reason", limit: Limits.reasonBytes)
        try await refusingAsProblem { try await service.cancelRun(id, actor: grant.actor, reason: reason) }
        await readYourWrite()
        return try JSONExchange.response(.accepted, ["run_id": JSONValue.string(id), "status": "CANCELLING"])
    }

    func redrive(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("runId")
        let body = try await JSONExchange.optionalObject(request)
        let fromStep = try JSONExchange.shortString(body, "from_step")
        try await refusingAsProblem { try await service.redriveRun(id, fromStep: fromStep, actor: grant.actor) }
        await readYourWrite()
        return try JSONExchange.response(.accepted, ["run_id": JSONValue.string(id)])
    }
}

/// Manual runs as both SPEC's `run` and seed 004's `execute` ask for them: read from the body, started as an
/// artificial signal, and waited for.
struct ManualRuns<Service: RunService, Queries: RunQueries> {
    let service: Service
    let queries: Queries
    /// How long an answer waits for the read models to show a run that was just accepted.
    let visibilityWait: Duration = .seconds(2)

    /// Starts the run the body asks for: `mode` (`live_run` unless `required`), the context under `inputField`,
    /// `idempotency_key` and `on_behalf_of`; returns once the read models show it (or a short wait passed). The run
    /// continues the request's `traceparent` header's trace (a malformed one is logged and ignored).
    func start(
        flowID: String, body: JSONValue, inputField: String, grant: TokenGrant, modeRequired: Bool = false,
        traceparent: String? = nil
    ) async throws -> RunStart {
        let mode: RunMode
        switch body["mode"] {
        case nil where !modeRequired, .null? where !modeRequired: mode = .live
        case .string("live_run")?: mode = .live
        case .string("dry_run")?: mode = .dry
        default: throw Problem.badRequest("mode must be \"live_run\" or \"dry_run\".")
        }
        let input = body[inputField] ?? .null
        guard input == .null || input.objectValue != nil else {
            throw Problem.badRequest("\(inputField) must be an object.")
        }
        let key = try JSONExchange.shortString(body, "idempotency_key")
        let onBehalfOf = try JSONExchange.shortString(body, "on_behalf_of")
        let outcome = try await refusingAsProblem {
            try await service.requestRun(
                ManualRunRequest(
                    flowID: flowID, input: input == .null ? .object([:]) : input, mode: mode, idempotencyKey: key,
                    actor: grant.actor, onBehalfOf: onBehalfOf, traceparent: traceparent))
        }
        if case .started(_, let sequence) = outcome {
            _ = await queries.waitForPosition(sequence, timeout: visibilityWait)
        }
        return outcome
    }

    /// How long `?wait=true` waits for the run to finish (`wait_sec` bounds it: at most 300 s, 30 s by default);
    /// nil without `wait`.
    static func wait(_ request: Request, impliedByWaitSeconds: Bool = false) throws -> Duration? {
        let query = request.uri.queryParameters
        switch query.get("wait")?.lowercased() {
        case nil where impliedByWaitSeconds && query.get("wait_sec") != nil: break
        case nil, "false", "0": return nil
        case "true", "1", "": break
        case let other?: throw Problem.badRequest("wait must be true or false, not \(other.prefix(40)).")
        }
        guard let text = query.get("wait_sec") else { return .seconds(30) }
        guard let seconds = Int(text), (1...300).contains(seconds) else {
            throw Problem.badRequest("wait_sec must be a whole number of seconds from 1 to 300.")
        }
        return .seconds(seconds)
    }

    /// Waits (at most `wait`) until the read models hold the run finished; true if they do.
    func finished(_ runID: String, within wait: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + wait
        while true {
            let position = queries.position
            let done = try queries.withRunJSON(runID) { raw in
                (try? JSONTree.decode(RunState.self, from: raw))?.status.isTerminal ?? false
            }
            if done == true { return true }
            let now = ContinuousClock.now
            if now >= deadline { return false }
            _ = await queries.waitForPosition(position + 1, timeout: min(deadline - now, .seconds(1)))
        }
    }
}

extension HTTPFields {
    static let traceparentName = Element.Name("traceparent")!
    /// The W3C Trace Context header a manual run's trace continues.
    var traceparent: String? { self[Self.traceparentName] }
}
