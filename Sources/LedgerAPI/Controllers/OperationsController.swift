public import Hummingbird
import LedgerCore
public import LedgerEngine

/// `/health`, `/ping`, `/openapi.json` (public) and `/metrics` (`viewer`): how the process, the log and the read
/// models are doing, and what the API is.
public struct OperationsController<Log: LogStatus, Status: OperationsStatus>: Sendable {
    let log: Log
    let status: Status
    /// The tokens: `/health` says when their file cannot be read (none of its tokens is accepted meanwhile).
    let tokens: AccessTokens?

    public init(log: Log, status: Status, tokens: AccessTokens? = nil) {
        self.log = log
        self.status = status
        self.tokens = tokens
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
        var tokenState: JSONValue = .null
        if let tokens {
            tokens.refreshIfDue()
            tokenState = [
                "file": tokens.file.map(JSONValue.string) ?? .null,
                "problem": tokens.fileProblem.map(JSONValue.string) ?? .null,
            ]
        }
        let body: JSONValue = [
            "tokens": tokenState,
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

    /// Prometheus text exposition of the engine's registry (see `EngineMetrics` and README.md, "Metrics"): what
    /// was counted where it happened, and the gauges sampled now.
    func metrics(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let metrics = status.metrics
        metrics.sample(
            runsInMemory: status.activeRuns, checkpoint: status.projectionPosition, skipped: status.projectionSkipped,
            statesReadBack: status.projectionStatesReadBack, lastSequence: try? await log.lastSequence(),
            natsConnected: log.isConnected)
        status.sampleScheduleMetrics()
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
    }
}
