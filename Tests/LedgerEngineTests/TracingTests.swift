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

/// A chat command as the assistant sends it, with `traceparent` (the CloudEvents extension) when given.
func tracedCommand(id: String, traceparent: String?) -> CloudEvent<JSONValue> {
    var event = CloudEvent(
        id: id, source: "assistant", type: EventType.assistantCommandIssued,
        data: [
            "message_id": .string("m-\(id)"), "intent": "calendar.create_event",
            "entities": ["title": "Dentist", "start": "2026-11-24T10:00:00Z", "with_suggestions": false],
            "user": ["id": "u-1"], "channel": ["type": "chat", "conversation_id": "c-9"],
        ] as JSONValue)
    event.traceparent = traceparent
    return event
}

/// Publishes `tracedCommand` on the assistant's subject from `connection`.
func publishTracedCommand(_ connection: NATSConnection, id: String, traceparent: String?) throws {
    try connection.publish(
        subject: Subjects.assistantCommandIssued,
        payload: try EventCodec().encode(tracedCommand(id: id, traceparent: traceparent)),
        headers: ["Nats-Msg-Id": id])
}

/// A test's HTTP service: a router served on a loopback port until `stop()`.
final class LoopbackHTTP: Sendable {
    let port: Int
    private let running = Mutex<(ServiceGroup, Task<Void, any Error>)?>(nil)
    var base: String { "http://127.0.0.1:\(port)" }

    init(port: Int = LocalNATSServer.freePort()) { self.port = port }

    /// Serves `router`; returns once `GET readyPath` answers 200.
    func start(_ router: Router<BasicRequestContext>, ready readyPath: String) async throws {
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: testLogger)
        running.withLock { $0 = TestStack.run([app]) }
        let client = TestHTTPClient(base: base, timeout: 2)
        try await eventually("the test HTTP service on port \(port) answers") { await client.status(readyPath) == 200 }
    }

    func stop() async {
        guard let (group, task) = running.withLock({ $0.take() }) else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

extension Integration {
    /// The W3C trace context of a run (README, "Tracing"): from the inbound message through every event of the run
    /// and every command it sends, each step attempt's span id as the parent of its commands, kept across restarts.
    @Suite struct TracingTests {
        static let inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

        /// The run's own events (its subject) and the messages it sent, in log order.
        func runMessages(_ stack: TestStack, _ runID: String) async throws -> [CloudEvent<JSONValue>] {
            try await stack.log().compactMap { entry in
                guard let event = entry.event, event.runid == runID || entry.subject == Subjects.run(runID) else {
                    return nil
                }
                return event
            }
        }

        func parse(_ text: String?, _ what: String) throws -> TraceParent {
            let text = try #require(text, "\(what) has no traceparent")
            return try TraceParent.parse(text).get()
        }

        @Test func aChatCommandsTraceReachesTheRunsEventsAndItsCalendarCommand() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try publishTracedCommand(stack.outside, id: "cmd-traced", traceparent: Self.inbound)
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.traceparent == Self.inbound, "the run keeps the inbound trace")

                let messages = try await runMessages(stack, run.run_id)
                let byType = Dictionary(messages.map { ($0.type, $0) }) { first, _ in first }
                for event in messages {
                    #expect(
                        try parse(event.traceparent, event.type).traceID == Self.traceID,
                        "\(event.type) is not in the inbound trace")
                }
                let started = try parse(byType[EventType.runStarted]?.traceparent, "FlowRunStarted")
                #expect(
                    started.parentID != "00f067aa0ba902b7", "the run's events name the run's span, not the caller's")
                #expect(byType[EventType.runStarted]?.data["traceparent"] == .string(Self.inbound))

                // The step attempt's span is the parent of its command, and of its own events.
                let attempt = try parse(byType[EventType.stepAttemptStarted]?.traceparent, "StepAttemptStarted")
                let command = try parse(byType[EventType.calendarSchedule]?.traceparent, "the calendar command")
                #expect(command == attempt)
                #expect(attempt.parentID != started.parentID)
                let succeeded = try parse(byType[EventType.stepAttemptSucceeded]?.traceparent, "StepAttemptSucceeded")
                #expect(succeeded == attempt)
                #expect(try parse(byType[EventType.runSucceeded]?.traceparent, "FlowRunSucceeded") == started)
                #expect(try parse(byType[EventType.outputProduced]?.traceparent, "FlowOutputProduced") == started)
            }
        }

        @Test func aRunRecoveredAfterARestartKeepsItsTrace() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(1500)
            try await withTestStack(calendar: settings) { stack in
                try await stack.activateExample()
                // No traceparent: the run starts a new trace, stored with it.
                try publishTracedCommand(stack.outside, id: "cmd-untraced", traceparent: nil)
                try await eventually("the calendar command is in the log") {
                    try await stack.log().contains { $0.event?.type == EventType.calendarSchedule }
                }
                await stack.stopEngine()
                try await eventually("the calendar answered while the engine was down") {
                    try await stack.log().contains { $0.event?.type == EventType.calendarCreated }
                }
                stack.restartEngine()
                let run = try #require(try await stack.waitForRuns(1).first)
                let trace = try parse(run.traceparent, "the run")
                let messages = try await runMessages(stack, run.run_id)
                for event in messages {
                    #expect(
                        try parse(event.traceparent, event.type).traceID == trace.traceID,
                        "\(event.type) left the run's trace")
                }
                let started = try #require(messages.first { $0.type == EventType.runStarted })
                #expect(try parse(started.traceparent, "FlowRunStarted") == trace, "the first span is the trace's root")
                // The restarted engine drives a segment of its own: a new span in the same trace.
                let finished = try #require(messages.first { $0.type == EventType.runSucceeded })
                #expect(try parse(finished.traceparent, "FlowRunSucceeded").parentID != trace.parentID)
            }
        }

        @Test func aMalformedOrHugeTraceparentIsIgnoredAndTheRunStartsANewTrace() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                let huge = Self.inbound + String(repeating: "-ab", count: 20_000)
                try publishTracedCommand(stack.outside, id: "cmd-zeros", traceparent: zeros)
                try publishTracedCommand(stack.outside, id: "cmd-huge", traceparent: huge)
                try publishTracedCommand(stack.outside, id: "cmd-upper", traceparent: Self.inbound.uppercased())
                let runs = try await stack.waitForRuns(3)
                #expect(
                    try await stack.ledger.read(subject: Subjects.rejected).isEmpty, "a traceparent refused a message")
                var traces = Set<String>()
                for run in runs {
                    let trace = try parse(run.traceparent, "run \(run.run_id)")
                    #expect(trace.traceID != Self.traceID && !trace.traceID.allSatisfy { $0 == "0" })
                    traces.insert(trace.traceID)
                }
                #expect(traces.count == 3, "each run has a trace of its own")
            }
        }

        /// A manual run over HTTP continues the request's `traceparent` header, and `http.request` sends the step's.
        @Test func aManualRunContinuesTheRequestsTraceAndHTTPStepsSendTheirs() async throws {
            let service = TraceHeaderService()
            try await service.start()
            defer { Task { await service.stop() } }
            try await withTestStack { stack in
                let flow = HTTPActionTests.flow("traced-http", [HTTPActionTests.call("call", "\(service.base)/echo")])
                #expect(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/traced-http/activate").0 == 200)
                let (status, body) = try await stack.client.json(
                    "POST", "/automation/flows/traced-http/run", ["input": [:], "mode": "live_run"],
                    headers: ["traceparent": Self.inbound])
                #expect(status == 202, "\(body)")
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.traceparent == Self.inbound)
                let sent = try parse(service.headers.withLock { $0.first }, "the HTTP call")
                let attempt = try #require(
                    try await runMessages(stack, run.run_id).first { $0.type == EventType.stepAttemptStarted })
                #expect(sent == (try parse(attempt.traceparent, "StepAttemptStarted")))
                #expect(sent.traceID == Self.traceID)
            }
        }
    }
}

/// Records the `traceparent` header of every request it answers.
final class TraceHeaderService: Sendable {
    let http = LoopbackHTTP()
    let headers = Mutex<[String]>([])
    var base: String { http.base }

    func start() async throws {
        let router = Router()
        router.get("/echo") { request, _ -> Response in
            if let value = request.headers[HTTPField.Name("traceparent")!] {
                self.headers.withLock { $0.append(value) }
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"ok":true}"#)))
        }
        router.get("/ready") { _, _ in "ready" }
        try await http.start(router, ready: "/ready")
    }

    func stop() async { await http.stop() }
}
