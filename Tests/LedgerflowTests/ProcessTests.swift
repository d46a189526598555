import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// Engines as separate workers and as processes killed with SIGKILL.
    @Suite struct ProcessTests {
        @Test func twoEnginesShare200RunsWithNoStepRunTwice() async throws {
            try await withTestStack { stack in try await shareRuns(stack) }
        }

        func shareRuns(_ stack: TestStack) async throws {
            let second = try await stack.addEngine()
            try await stack.activateExample()
            for i in 0..<200 { try stack.publishCommand(id: "share-\(i)") }
            _ = try await stack.waitForRuns(200, timeout: .seconds(90))
            #expect(
                stack.engine.runsStarted.load(ordering: .relaxed) + second.runsStarted.load(ordering: .relaxed) == 200)
            #expect(stack.engine.eventsAppended.load(ordering: .relaxed) > 0)
            #expect(second.eventsAppended.load(ordering: .relaxed) > 0, "the second engine took part")
            #expect(stack.calendar.commandsReceived == 200, "one calendar command per run")
            #expect(stack.calendar.eventsCreated == 200)
            // In the log: exactly one StepAttemptStarted per run, step and attempt.
            var starts: [String: Int] = [:]
            let messages = try await stack.ledger.read(subject: "ledger.run.>")
            for message in messages {
                let event = try JSONDecoder().decode(LedgerEvent.self, from: Data(message.payload))
                if case .stepAttemptStarted(let e) = event.body {
                    starts["\(event.runid ?? "")/\(e.step_id)/\(e.attempt)", default: 0] += 1
                }
            }
            #expect(starts.count == 200)
            #expect(starts.values.allSatisfy { $0 == 1 })
        }

        @Test func aSIGKILLedEngineWithAPendingRetryFinishesItsRunsAfterARestart() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let outside = try await NATSConnection.connect(url: TestServer.url, name: "kill-test", logger: testLogger)
            defer { outside.close() }
            var settings = CalendarSimulator.Settings()
            settings.failFirst = 1  // every first attempt fails (retryable): each run then waits on a retry timer
            let calendar = try await CalendarSimulator.connect(
                url: TestServer.url, settings: settings, logger: testLogger)
            let calendarTask = Task { try await calendar.run() }
            defer { calendarTask.cancel() }
            let data = TemporaryDirectory("serve")
            var serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path)
            defer { serve.kill() }
            try await serve.waitReady()
            var flow = Fixtures.calendarCreateEvent.objectValue!
            flow["defaults"] = [
                "retry": ["max_attempts": 3, "initial_ms": 4000, "max_ms": 4000, "jitter": false], "timeout_sec": 60,
            ]
            #expect(try await serve.http.json("POST", "/automation/flows", .object(flow)).0 == 201)
            #expect(try await serve.http.json("POST", "/automation/flows/calendar-create-event/activate").0 == 200)
            let runs = 5
            for i in 0..<runs {
                let event = CloudEvent(
                    id: "kill-\(i)", source: "assistant", type: EventType.assistantCommandIssued,
                    data: JSONValue.object([
                        "message_id": .string("m-\(i)"), "intent": "calendar.create_event",
                        "entities": ["title": .string("K\(i)"), "start": "s"],
                        "user": ["id": "u"], "channel": ["type": "chat", "conversation_id": "c"],
                    ]))
                try outside.publish(subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event))
            }
            try await eventually("every run waits on a retry timer") {
                let failed = try await ledger.read(subject: "ledger.run.>").filter {
                    String(decoding: $0.payload, as: UTF8.self).contains("\"retry_at\"")
                }
                return failed.count == runs
            }
            serve.kill()  // SIGKILL: no clean stop, timers and memory lost
            #expect(calendar.eventsCreated == 0)
            serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, port: serve.port, dataDirectory: data.path)
            try await serve.waitReady()
            try await eventually("every run finishes after the restart", timeout: .seconds(40)) {
                let (_, list) = try await serve.http.json("GET", "/automation/runs?status=SUCCEEDED&limit=100")
                if case .array(let items)? = list["runs"] { return items.count == runs }
                return false
            }
            #expect(
                calendar.eventsCreated == runs,
                "one calendar event per run: side effects counted \(calendar.eventsCreated), expected \(runs)")
            for i in 0..<runs {
                #expect(
                    calendar.createdCount(forKey: "\(DerivedID.uuid("calendar-create-event/kill-\(i)"))/create") == 1)
            }
            let outputs = try await ledger.read(subject: Subjects.outputProduced)
            #expect(outputs.count == runs)
            print(
                "kill/restart: runs completed \(runs)/\(runs) started; calendar events \(calendar.eventsCreated)/\(runs) expected; commands received \(calendar.commandsReceived)"
            )
        }
    }
}
