public import Hummingbird
import LedgerCore
import LedgerEngine

/// `/health`, `/ping`, `/openapi.json` (public) and `/metrics` (`viewer`): how the process, the log and the read
/// models are doing, and what the API is.
public struct OperationsController<Log: LogStatus, Status: OperationsStatus>: Sendable {
    let log: Log
    let status: Status

    public init(log: Log, status: Status) {
        self.log = log
        self.status = status
    }

    /// Adds `/health`, `/ping` and `/openapi.json` to `router` as they are, and `/metrics` behind the `viewer` role.
    public func addRoutes(to router: Router<LedgerRequestContext>, access: AccessControl) {
        router.get("/health", use: health)
        // A static route with no dependencies: a liveness probe, and the benchmarks' ceiling for a bare route.
        router.get("/ping") { _, _ in "pong" }
        // Public, like /health: the document describes the API and holds no data (README, "OpenAPI").
        router.get("/openapi.json", use: OpenAPIDocument.response)
        router.group().add(middleware: access.require(.viewer))
            .get("metrics", use: metrics)
    }

    /// Liveness plus the NATS connection, the stream and the read models' lag; 503 while the log is unreachable.
    func health(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let connected = log.isConnected
        var stream: JSONValue = .null
        var lag: JSONValue = .null
        let position = status.projectionPosition
        if connected, let state = try? await log.state() {
            stream = [
                "name": .string(state.stream), "messages": .number(Double(state.messages)),
                "last_seq": .number(Double(state.lastSequence)),
            ]
            lag = .number(Double(state.lastSequence > position ? state.lastSequence - position : 0))
        }
        let healthy = connected && stream != .null
        let body: JSONValue = [
            "status": healthy ? "ok" : "degraded",
            "nats": ["connected": .bool(connected), "url": .string(log.url)],
            "stream": stream,
            "projection": [
                "checkpoint": .number(Double(position)), "lag": lag,
                "skipped": .number(Double(status.projectionSkipped)),
            ],
            "engine": ["ready": .bool(status.isReady), "active_runs": .number(Double(status.activeRuns))],
        ]
        return try JSONExchange.response(healthy ? .ok : .serviceUnavailable, body)
    }

    /// Prometheus text exposition of the engine's and the read models' counters and gauges.
    func metrics(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let counters = status.counters
        let position = status.projectionPosition
        var lines: [String] = []
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value.exactInt().map(String.init) ?? String(value))")
        }
        metric("ledgerflow_runs_started_total", "counter", "Runs this process started.", Double(counters.runsStarted))
        metric(
            "ledgerflow_run_events_appended_total", "counter", "Events this process appended to runs.",
            Double(counters.eventsAppended))
        metric(
            "ledgerflow_inbound_rejected_total", "counter", "Inbound messages refused and recorded.",
            Double(counters.messagesRejected))
        metric(
            "ledgerflow_inbound_retries_total", "counter",
            "Inbound deliveries handed back to be tried again (a transient failure).", Double(counters.inboundRetries))
        metric(
            "ledgerflow_projection_skipped_total", "counter",
            "Log messages the read models could not apply (recorded in the skipped table).",
            Double(status.projectionSkipped))
        metric(
            "ledgerflow_runs_in_memory", "gauge", "Unfinished runs this process is driving.", Double(status.activeRuns))
        metric("ledgerflow_projection_checkpoint", "gauge", "Log sequence the read models reflect.", Double(position))
        if let last = try? await log.lastSequence() {
            metric("ledgerflow_log_last_sequence", "gauge", "Last sequence of the log.", Double(last))
            metric(
                "ledgerflow_projection_lag", "gauge", "Log messages the read models have not applied yet.",
                Double(last > position ? last - position : 0))
        }
        metric("ledgerflow_nats_connected", "gauge", "1 while the NATS connection is up.", log.isConnected ? 1 : 0)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: lines.joined(separator: "\n") + "\n")))
    }
}
