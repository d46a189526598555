import Foundation
import LedgerCore
import LedgerEngine
import LedgerTestSupport
import Testing

extension Integration {
    /// Each event is encoded once, by whoever appends it, and decoded once per consumer that reads it from the log:
    /// a real `serve` runs chat-triggered runs of three `transform` steps (the benchmark's end-to-end workload) on a
    /// fresh stream, and its metrics (`ledgerflow_events_encoded_total`, `ledgerflow_events_decoded_total`, counted
    /// in the coding functions themselves) are checked against the engine events the log holds afterwards.
    @Suite struct EventCodingTests {
        static let flow: JSONValue = [
            "id": "coded-once", "name": "Three steps",
            "trigger": ["event": "AssistantCommandIssued", "intent": "coding.check"],
            "steps": [
                ["id": "a", "action": "transform", "with": ["value": "{{trigger.entities.n}}"]],
                ["id": "b", "action": "transform", "depends_on": ["a"], "with": ["value": "{{steps.a.output}}"]],
                ["id": "c", "action": "transform", "depends_on": ["b"], "with": ["value": "{{steps.b.output}}"]],
            ],
            "output": ["text": "{{steps.c.output}}"],
        ]

        @Test func aRunsEventsAreEncodedOnceAndDecodedOnceByTheReadModels() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let data = TemporaryDirectory("coding")
            let serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path)
            defer { serve.kill() }
            try await serve.waitReady()
            #expect(try await serve.http.json("POST", "/automation/flows", Self.flow).0 == 201)
            #expect(try await serve.http.json("POST", "/automation/flows/coded-once/activate").0 == 200)
            let runs = 40
            for n in 0..<runs {
                let command = AssistantCommandIssued(
                    message_id: "coding-\(n)", intent: "coding.check", entities: ["n": .number(Double(n))],
                    user: .init(id: "u-1"), channel: .init(type: "chat", conversation_id: "c-1"))
                try await ledger.send(
                    CloudEvent(type: EventType.assistantCommandIssued, data: command),
                    on: Subjects.assistantCommandIssued)
            }
            try await eventually("every run succeeded", timeout: .seconds(60)) {
                let (_, listing) = try await serve.http.json(
                    "GET", "/automation/runs?flow_id=coded-once&status=SUCCEEDED&limit=100")
                return listing["runs"]?.arrayValue?.count == runs
            }
            try await serve.waitCaughtUp()

            // Every message of the log, each read here once: the triggers this test sent, and what serve wrote (the
            // engine's events, the outputs) with the engine's own events among them.
            var written = 0
            var outputs = 0
            var events = 0
            var types: [String: Int] = [:]
            for message in try await ledger.read(subject: nil) {
                if message.subject == Subjects.assistantCommandIssued { continue }
                written += 1
                if message.subject == Subjects.outputProduced { outputs += 1 }
                let event = try LedgerEvent(bytes: message.payload)
                if case .other = event.body { continue }
                events += 1
                types[event.type, default: 0] += 1
            }
            #expect(types[EventType.runSucceeded] == runs && types[EventType.stepAttemptSucceeded] == 3 * runs)
            #expect(outputs == runs)
            let (_, text) = try await serve.http.text("GET", "/metrics")
            let metrics = PrometheusText(text)
            let encoded = try #require(metrics.value("ledgerflow_events_encoded_total"))
            let decoded = try #require(metrics.value("ledgerflow_events_decoded_total"))
            // Encoded: once each, what serve wrote. Decoded: each trigger once (the engine's consumer), each event
            // of the log once (the read models; the engine keeps the runs it drives decoded and reads none back).
            #expect(Int(encoded) == written, "encoded \(encoded) for \(written) messages serve wrote: \(types)")
            #expect(
                Int(decoded) == runs + events, "decoded \(decoded) for \(runs) triggers and \(events) events: \(types)")
        }
    }
}
