import Foundation
public import Hummingbird
import LedgerCore
public import LedgerEngine
import LedgerNATS
import LedgerProjections
public import Logging
import Synchronization

/// What the HTTP API stands on.
public struct APIDependencies: Sendable {
    public var ledger: Ledger
    public var store: ReadModelStore
    public var engine: Engine
    public var admin: FlowAdmin
    public var tokens: TokenStore

    public init(ledger: Ledger, store: ReadModelStore, engine: Engine, tokens: TokenStore) {
        self.ledger = ledger
        self.store = store
        self.engine = engine
        self.admin = FlowAdmin(ledger: ledger, store: store)
        self.tokens = tokens
    }
}

/// Builds the Hummingbird application serving SPEC §4 on `host:port`.
public func buildApplication(_ deps: APIDependencies, host: String = "127.0.0.1", port: Int = 8080, logger: Logger)
    -> some ApplicationProtocol
{
    Application(
        router: buildRouter(deps), configuration: .init(address: .hostname(host, port: port), serverName: "ledgerflow"),
        logger: logger)
}

/// The routes of SPEC §4.
public func buildRouter(_ deps: APIDependencies) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: ConcurrencyLimitMiddleware())
    let api = FlowsAPI(deps: deps)
    router.get("/health") { _, _ in try await api.health() }
    // A static route with no dependencies: a liveness probe, and the benchmarks' ceiling for a bare route.
    router.get("/ping") { _, _ in "pong" }
    router.post("/automation/flows") { request, context in try await api.register(request, context) }
    router.get("/automation/flows") { request, context in try api.listFlows(request, context) }
    router.get("/automation/flows/{id}") { request, context in try api.getFlow(request, context) }
    router.put("/automation/flows/{id}") { request, context in try await api.update(request, context) }
    router.get("/automation/flows/{id}/versions") { request, context in try api.versions(request, context) }
    router.post("/automation/flows/{id}/activate") { request, context in try await api.activate(request, context, active: true) }
    router.post("/automation/flows/{id}/deactivate") { request, context in try await api.activate(request, context, active: false) }
    router.post("/automation/flows/{id}/run") { request, context in try await api.run(request, context) }
    router.get("/automation/runs") { request, context in try api.listRuns(request, context) }
    router.get("/automation/runs/{runId}") { request, context in try await api.getRun(request, context) }
    router.post("/automation/runs/{runId}/cancel") { request, context in try await api.cancel(request, context) }
    router.post("/automation/runs/{runId}/redrive") { request, context in try await api.redrive(request, context) }
    router.get("/automation/dlq") { request, context in try api.deadLetters(request, context) }
    router.get("/metrics") { request, context in try await api.metrics(request, context) }
    return router
}

struct FlowsAPI: Sendable {
    let deps: APIDependencies

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    func json(_ status: HTTPResponse.Status = .ok, _ value: some Encodable) throws -> Response {
        json(status, bytes: Array(try Self.encoder.encode(value)))
    }

    func json(_ status: HTTPResponse.Status = .ok, bytes: some Collection<UInt8>) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The caller's grant; 401 without a known token, 403 without the role.
    func authorize(_ request: Request, _ role: Role) throws -> TokenGrant {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw Problem(.unauthorized, code: "unauthorized", title: "Unauthorized", detail: "Send Authorization: Bearer <token> (ledgerflow dev prints one).")
        }
        guard let grant = deps.tokens.grant(for: String(header.dropFirst(7).drop { $0 == " " })) else {
            throw Problem(.unauthorized, code: "unauthorized", title: "Unauthorized", detail: "The token is not known to this server.")
        }
        guard grant.role >= role else {
            throw Problem(.forbidden, code: "forbidden", title: "Forbidden", detail: "This needs the \(role.rawValue) role; the token has \(grant.role.rawValue).")
        }
        return grant
    }

    func body(_ request: Request, _ context: BasicRequestContext) async throws -> JSONValue {
        var request = request
        let buffer = try await request.collectBody(upTo: Limits.streamMessageBytes)
        do {
            return try JSONTree.parse(buffer.readableBytesView, maxDepth: Limits.inboundJSONDepth)
        } catch {
            throw Problem.badRequest("The body is not usable JSON (\(buffer.readableBytes) bytes): \(error). Send one JSON object, nested at most \(Limits.inboundJSONDepth) levels.")
        }
    }

    func engineCall<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as EngineError {
            throw Problem.from(error)
        } catch let error as StartRefused {
            throw Problem(.conflict, code: "invalid_state", title: "Run cannot start", detail: "\(error.reason).")
        } catch let error as NATSError where error.jetStreamError == .messageTooLarge {
            // Retrying cannot help: the request makes an event larger than the log accepts.
            throw Problem.badRequest("The request is too large to record in the log (\(error.message)); send less data.")
        } catch let error as NATSError {
            throw Problem.from(.unavailable("NATS did not answer: \(error.message)."))
        }
    }

    // MARK: flows

    func flowView(_ record: FlowRecord, version: Int? = nil) throws -> FlowView {
        let n = version ?? record.current_version
        guard let entry = record.version(n) else {
            throw Problem(.notFound, code: "flow_not_found", title: "Version not found", detail: "Flow \(record.flow_id) has versions 1 to \(record.current_version).")
        }
        return FlowView(
            id: record.flow_id, version: entry.version, current_version: record.current_version, status: record.status,
            active_version: record.active_version, definition: entry.definition, definition_hash: entry.definition_hash,
            created_at: record.created_at, updated_at: record.updated_at)
    }

    func register(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let grant = try authorize(request, .admin)
        let definition = try await body(request, context)
        let record = try await engineCall { try await deps.admin.register(definition, actor: grant.subject) }
        return try json(.created, try flowView(record))
    }

    func update(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let grant = try authorize(request, .admin)
        let id = try context.parameters.require("id")
        let definition = try await body(request, context)
        let basedOn: Int?
        switch definition["version"] {
        case nil, .null?: basedOn = nil
        case .number(let n)?:
            guard let v = n.exactInt(in: 1...Int(Int32.max)) else {
                throw Problem(.badRequest, code: "bad_request", title: "Bad version", detail: "\"version\" must be a whole number from 1 to \(Int32.max): the version this change is based on (the flow's current_version).")
            }
            basedOn = v
        default:
            throw Problem(.badRequest, code: "bad_request", title: "Bad version", detail: "\"version\" must be a number: the version this change is based on (the flow's current_version).")
        }
        let record = try await engineCall { try await deps.admin.update(id, definition, basedOn: basedOn, actor: grant.subject) }
        return try json(.ok, try flowView(record))
    }

    func getFlow(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        _ = try authorize(request, .viewer)
        let id = try context.parameters.require("id")
        guard let record = try deps.store.flow(id) else { throw Problem.from(.flowNotFound(id)) }
        let version = request.uri.queryParameters.get("version", as: Int.self)
        return try json(.ok, try flowView(record, version: version))
    }

    func listFlows(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        _ = try authorize(request, .viewer)
        let flows = try deps.store.flows().map { record in
            FlowSummary(
                id: record.flow_id, name: record.current?.definition["name"]?.stringValue, status: record.status,
                version: record.current_version, active_version: record.active_version, updated_at: record.updated_at)
        }
        return try json(.ok, ["flows": flows])
    }

    func versions(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        _ = try authorize(request, .viewer)
        let id = try context.parameters.require("id")
        guard let record = try deps.store.flow(id) else { throw Problem.from(.flowNotFound(id)) }
        let versions = record.versions.map { VersionSummary(version: $0.version, actor: $0.actor, created_at: $0.created_at, based_on: $0.based_on, definition_hash: $0.definition_hash) }
        return try json(.ok, VersionHistory(id: id, current_version: record.current_version, versions: versions, history: record.history))
    }

    func activate(_ request: Request, _ context: BasicRequestContext, active: Bool) async throws -> Response {
        let grant = try authorize(request, .admin)
        let id = try context.parameters.require("id")
        let record = try await engineCall {
            active ? try await deps.admin.activate(id, actor: grant.subject) : try await deps.admin.deactivate(id, actor: grant.subject)
        }
        return try json(.ok, try flowView(record))
    }

    // MARK: runs

    func run(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let grant = try authorize(request, .`operator`)
        let id = try context.parameters.require("id")
        let body = try await body(request, context)
        guard case .object = body else { throw Problem.badRequest("The body must be an object: {input, mode, idempotency_key?}.") }
        let mode: RunMode
        switch body["mode"]?.stringValue ?? "live_run" {
        case "live_run": mode = .live
        case "dry_run": mode = .dry
        case let other: throw Problem.badRequest("mode must be live_run or dry_run, not \(other).")
        }
        let input = body["input"] ?? .object([:])
        guard case .object = input else { throw Problem.badRequest("input must be an object.") }
        let key = try Self.shortString(body, "idempotency_key")
        let outcome = try await engineCall {
            try await deps.engine.requestRun(flowID: id, input: input, mode: mode, idempotencyKey: key, actor: grant.subject)
        }
        if case .started(_, let sequence) = outcome {
            _ = await deps.store.progress.wait(for: sequence, timeout: .seconds(2))
        }
        var answer: [String: JSONValue] = ["run_id": .string(outcome.runID)]
        if case .duplicate = outcome { answer["duplicate"] = true }
        return try json(.accepted, JSONValue.object(answer))
    }

    func getRun(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = try authorize(request, .viewer)
        let id = try context.parameters.require("runId")
        // The stored JSON is the answer: copied once, straight from the LMDB page into the response buffer.
        func lookup() throws -> Response? {
            try deps.store.withRunJSON(id) { raw in
                Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: raw)))
            }
        }
        if let response = try lookup() { return response }
        // Just accepted? Wait briefly for the read model to reach the end of the log as it is now.
        if let end = try? await deps.ledger.lastSequence(), end > deps.store.progress.position {
            _ = await deps.store.progress.wait(for: end, timeout: .seconds(2))
            if let response = try lookup() { return response }
        }
        throw Problem.from(.runNotFound(id))
    }

    func listRuns(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        _ = try authorize(request, .viewer)
        let query = request.uri.queryParameters
        let limit = min(max(query.get("limit", as: Int.self) ?? 50, 1), 1000)
        let runs = try deps.store.runs(flowID: query.get("flow_id"), status: query.get("status"), limit: limit)
        return try json(.ok, ["runs": runs])
    }

    func optionalBody(_ request: Request, _ context: BasicRequestContext) async throws -> JSONValue {
        var request = request
        let buffer = try await request.collectBody(upTo: 1 << 20)
        if buffer.readableBytes == 0 { return .object([:]) }
        guard let value = try? JSONTree.parse(buffer.readableBytesView, maxDepth: Limits.inboundJSONDepth), case .object = value else {
            throw Problem.badRequest("The body must be a JSON object (or empty), nested at most \(Limits.inboundJSONDepth) levels.")
        }
        return value
    }

    /// An optional string field of at most `limit` bytes.
    static func shortString(_ body: JSONValue, _ field: String, limit: Int = Limits.identifierBytes) throws -> String? {
        switch body[field] {
        case nil, .null?: return nil
        case .string(let text)? where text.utf8.count <= limit: return text
        case .string(let text)?: throw Problem.badRequest("\(field) is \(text.utf8.count) bytes; at most \(limit) are accepted.")
        default: throw Problem.badRequest("\(field) must be a string.")
        }
    }

    func cancel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let grant = try authorize(request, .`operator`)
        let id = try context.parameters.require("runId")
        let body = try await optionalBody(request, context)
        let reason = try Self.shortString(body, "reason", limit: Limits.reasonBytes)
        try await engineCall { try await deps.engine.cancelRun(id, actor: grant.subject, reason: reason) }
        return try json(.accepted, ["run_id": JSONValue.string(id), "status": "CANCELLING"])
    }

    func redrive(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let grant = try authorize(request, .`operator`)
        let id = try context.parameters.require("runId")
        let body = try await optionalBody(request, context)
        let fromStep = try Self.shortString(body, "from_step")
        try await engineCall { try await deps.engine.redriveRun(id, fromStep: fromStep, actor: grant.subject) }
        return try json(.accepted, ["run_id": JSONValue.string(id)])
    }

    func deadLetters(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        _ = try authorize(request, .viewer)
        let limit = min(max(request.uri.queryParameters.get("limit", as: Int.self) ?? 100, 1), 1000)
        var letters: [DeadLetter] = []
        for id in try deps.store.failedRunIDs() {
            guard let run = try deps.store.run(id) else { continue }
            let failed = run.error?.step_id.flatMap { run.step($0) } ?? run.steps.first { $0.status == .failed }
            letters.append(DeadLetter(
                run_id: run.run_id, flow_id: run.flow_id, flow_version: run.flow_version, failed_at: run.finished_at,
                error: run.error, failed_step: failed?.step_id, attempts: failed?.attempts ?? [], trigger: run.trigger,
                input: run.input, compensations: run.steps.compactMap { step in
                    step.compensation.map { CompensationView(step_id: step.step_id, status: $0.status.rawValue, attempts: $0.attempts) }
                }, redrives: run.redrives))
        }
        letters.sort { ($0.failed_at ?? "") > ($1.failed_at ?? "") }
        return try json(.ok, DeadLetters(dead_letters: Array(letters.prefix(limit)), total: letters.count))
    }

    /// Prometheus text exposition of the engine's and the read models' counters and gauges.
    func metrics(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        _ = try authorize(request, .viewer)
        let engine = deps.engine
        let position = deps.store.progress.position
        var lines: [String] = []
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value.exactInt().map(String.init) ?? String(value))")
        }
        metric("ledgerflow_runs_started_total", "counter", "Runs this process started.", Double(engine.runsStarted.load(ordering: .relaxed)))
        metric("ledgerflow_run_events_appended_total", "counter", "Events this process appended to runs.", Double(engine.eventsAppended.load(ordering: .relaxed)))
        metric("ledgerflow_inbound_rejected_total", "counter", "Inbound messages refused and recorded.", Double(engine.messagesRejected.load(ordering: .relaxed)))
        metric("ledgerflow_inbound_retries_total", "counter", "Inbound deliveries handed back to be tried again (a transient failure).", Double(engine.inboundRetries.load(ordering: .relaxed)))
        metric("ledgerflow_projection_skipped_total", "counter", "Log messages the read models could not apply (recorded in the skipped table).", Double(deps.store.skippedCount))
        metric("ledgerflow_runs_in_memory", "gauge", "Unfinished runs this process is driving.", Double(engine.activeRunCount))
        metric("ledgerflow_projection_checkpoint", "gauge", "Log sequence the read models reflect.", Double(position))
        if let last = try? await deps.ledger.lastSequence() {
            metric("ledgerflow_log_last_sequence", "gauge", "Last sequence of the log.", Double(last))
            metric("ledgerflow_projection_lag", "gauge", "Log messages the read models have not applied yet.", Double(last > position ? last - position : 0))
        }
        metric("ledgerflow_nats_connected", "gauge", "1 while the NATS connection is up.", deps.ledger.isConnected ? 1 : 0)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: lines.joined(separator: "\n") + "\n")))
    }

    // MARK: health

    func health() async throws -> Response {
        let connected = deps.ledger.isConnected
        var stream: JSONValue = .null
        var lag: JSONValue = .null
        let position = deps.store.progress.position
        if connected, let log = try? await deps.ledger.state() {
            stream = ["name": .string(log.stream), "messages": .number(Double(log.messages)), "last_seq": .number(Double(log.lastSequence))]
            lag = .number(Double(log.lastSequence > position ? log.lastSequence - position : 0))
        }
        let healthy = connected && stream != .null
        let body: JSONValue = [
            "status": healthy ? "ok" : "degraded",
            "nats": ["connected": .bool(connected), "url": .string(deps.ledger.url)],
            "stream": stream,
            "projection": ["checkpoint": .number(Double(position)), "lag": lag, "skipped": .number(Double(deps.store.skippedCount))],
            "engine": ["ready": .bool(deps.engine.ready.load(ordering: .acquiring)), "active_runs": .number(Double(deps.engine.activeRunCount))],
        ]
        return try json(healthy ? .ok : .serviceUnavailable, body)
    }
}

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
}

struct FlowSummary: Encodable {
    var id: String
    var name: String?
    var status: FlowStatus
    var version: Int
    var active_version: Int?
    var updated_at: String
}

struct VersionSummary: Encodable {
    var version: Int
    var actor: String
    var created_at: String
    var based_on: Int?
    var definition_hash: String
}

struct VersionHistory: Encodable {
    var id: String
    var current_version: Int
    var versions: [VersionSummary]
    var history: [FlowChange]
}

struct CompensationView: Encodable {
    var step_id: String
    var status: String
    var attempts: [AttemptRecord]
}

/// A failed run with what is needed to understand it (and redrive it).
struct DeadLetter: Encodable {
    var run_id: String
    var flow_id: String
    var flow_version: Int
    var failed_at: String?
    var error: RunError?
    var failed_step: String?
    var attempts: [AttemptRecord]
    var trigger: RunTrigger
    var input: JSONValue
    var compensations: [CompensationView]
    var redrives: Int
}

struct DeadLetters: Encodable {
    var dead_letters: [DeadLetter]
    var total: Int
}
