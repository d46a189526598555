import Foundation
import HTTPTypes
import Hummingbird
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import ServiceLifecycle
import Synchronization
import Testing

@testable import LedgerEngine

/// An OTLP/HTTP collector stand-in: keeps every `POST /v1/traces` (body and content type).
final class OTLPReceiver: Sendable {
    let http: LoopbackHTTP
    let requests = Mutex<[(contentType: String, body: [UInt8])]>([])
    var base: String { http.base }

    init(port: Int = LocalNATSServer.freePort()) { http = LoopbackHTTP(port: port) }

    func start() async throws {
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 16 << 20)
            self.requests.withLock {
                $0.append((request.headers[.contentType] ?? "", Array(body.readableBytesView)))
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer()))
        }
        router.get("/ready") { _, _ in "ready" }
        try await http.start(router, ready: "/ready")
    }

    func stop() async { await http.stop() }

    /// The spans received, from OTLP/JSON bodies: ids as lowercase hex (OTLP/JSON writes them as hex; protobuf's
    /// JSON mapping as base64: both are read).
    func spans() -> [(name: String, traceID: String, spanID: String, parentID: String)] {
        requests.withLock { $0 }.flatMap { request -> [(String, String, String, String)] in
            guard let json = try? JSONTree.parse(request.body) else { return [] }
            var spans: [(String, String, String, String)] = []
            for resource in json["resourceSpans"]?.arrayValue ?? [] {
                for scope in resource["scopeSpans"]?.arrayValue ?? [] {
                    for span in scope["spans"]?.arrayValue ?? [] {
                        spans.append(
                            (
                                span["name"]?.stringValue ?? "", Self.hex(span["traceId"]), Self.hex(span["spanId"]),
                                Self.hex(span["parentSpanId"])
                            ))
                    }
                }
            }
            return spans
        }
    }

    static func hex(_ value: JSONValue?) -> String {
        guard let text = value?.stringValue, !text.isEmpty else { return "" }
        if text.count == 16 || text.count == 32, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let bytes = Data(base64Encoded: text) else { return text }
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

extension Integration {
    /// The spans of a run and its steps leave `ledgerflow serve` over OTLP/HTTP when, and only when,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set; they are flushed when serve stops.
    @Suite struct TracingExportTests {
        static let inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

        /// Runs the calendar example once in a `ledgerflow serve --simulators` child with `environment`, for a chat
        /// command carrying the inbound traceparent; stops serve (as Ctrl-C does) once the run succeeded.
        func runOnce(
            commandID: String, environment: [String: String], outside: NATSConnection, register: Bool
        ) async throws {
            let data = TemporaryDirectory("otlp")
            let serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path,
                arguments: ["--simulators"], environment: environment)
            defer { serve.kill() }
            try await serve.waitReady()
            if register {
                #expect(try await serve.http.json("POST", "/automation/flows", Fixtures.calendarCreateEvent).0 == 201)
                #expect(
                    try await serve.http.json("POST", "/automation/flows/calendar-create-event/activate").0 == 200)
            }
            try publishTracedCommand(outside, id: commandID, traceparent: Self.inbound)
            try await outside.flush()
            let runID = DerivedID.uuid("calendar-create-event/\(commandID)")
            try await eventually("run \(runID) succeeds in serve", timeout: .seconds(30)) {
                try await serve.http.json("GET", "/automation/runs/\(runID)").1["status"] == "SUCCEEDED"
            }
            serve.stop()
            #expect(serve.process.terminationReason == .exit && serve.process.terminationStatus == 0)
        }

        @Test func spansOfARunAndItsStepsAreExportedOnlyWhenAnEndpointIsSet() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let outside = try await NATSConnection.connect(
                url: TestServer.url, name: "otlp-test-outside", logger: testLogger)
            defer { outside.close() }

            // No endpoint: nothing is sent, not even to OTLP/HTTP's default address (localhost:4318).
            let fallback = OTLPReceiver(port: 4318)
            do {
                try await fallback.start()
            } catch {
                Issue.record(
                    "port 4318 (OTLP/HTTP's default) is taken on this machine; cannot check that nothing is sent there")
            }
            try await runOnce(
                commandID: "cmd-no-endpoint",
                environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""],
                outside: outside, register: true)
            await fallback.stop()
            #expect(fallback.requests.withLock { $0.count } == 0, "spans were sent without an endpoint")

            // An endpoint: the run's and its step's spans arrive, in the inbound trace, flushed as serve stops.
            let receiver = OTLPReceiver()
            try await receiver.start()
            try await runOnce(
                commandID: "cmd-endpoint",
                environment: [
                    "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                ],
                outside: outside, register: false)
            await receiver.stop()
            let requests = receiver.requests.withLock { $0 }
            #expect(!requests.isEmpty, "no OTLP request arrived")
            #expect(requests.allSatisfy { $0.contentType.hasPrefix("application/json") })
            let spans = receiver.spans().filter { $0.traceID == Self.traceID }
            let run = try #require(
                spans.first { $0.name == "run calendar-create-event" },
                "no run span in the inbound trace among \(receiver.spans().map(\.name))")
            #expect(run.parentID == "00f067aa0ba902b7", "the run's span is the inbound span's child")
            let step = try #require(spans.first { $0.name == "step create" }, "no span for the step")
            #expect(step.parentID == run.spanID, "the step's span nests under the run's")

            // The calendar command of the run names the step's span as its parent.
            let runID = DerivedID.uuid("calendar-create-event/cmd-endpoint")
            let commands = try await ledger.read(subject: Subjects.calendarSchedule).compactMap {
                try? JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data($0.payload))
            }
            let command = try #require(commands.first { $0.runid == runID })
            let parent = try TraceParent.parse(try #require(command.traceparent)).get()
            #expect(parent.traceID == Self.traceID && parent.parentID == step.spanID)
        }
    }
}
