import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import LedgerCore
@testable import LedgerEngine
import LedgerNATS
import Synchronization
import Testing

extension Integration {
    /// Engines as separate workers and as processes killed with SIGKILL.
    @Suite struct ProcessTests {
        @Test func twoEnginesShare200RunsWithNoStepRunTwice() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            let second = try await stack.addEngine()
            try await stack.activateExample()
            for i in 0..<200 { try stack.publishCommand(id: "share-\(i)") }
            _ = try await stack.waitForRuns(200, timeout: .seconds(90))
            #expect(stack.engine.runsStarted.load(ordering: .relaxed) + second.runsStarted.load(ordering: .relaxed) == 200)
            #expect(stack.engine.eventsAppended.load(ordering: .relaxed) > 0)
            #expect(second.eventsAppended.load(ordering: .relaxed) > 0, "the second engine took part")
            #expect(stack.calendar.commandsReceived == 200, "one calendar command per run")
            #expect(stack.calendar.eventsCreated == 200)
            // In the log: exactly one StepAttemptStarted per run, step and attempt.
            var starts: [String: Int] = [:]
            for message in try await stack.ledger.read(subject: "ledger.run.>") {
                let event = try JSONDecoder().decode(LedgerEvent.self, from: Data(message.payload))
                if case .stepAttemptStarted(let e) = event.body { starts["\(event.runid ?? "")/\(e.step_id)/\(e.attempt)", default: 0] += 1 }
            }
            #expect(starts.count == 200)
            #expect(starts.values.allSatisfy { $0 == 1 })
        }

        @Test func aSIGKILLedEngineWithAPendingRetryFinishesItsRunsAfterARestart() async throws {
            let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug/ledgerflow").standardized.path
            try #require(FileManager.default.isExecutableFile(atPath: binary), "build the ledgerflow executable first (swift build --build-tests)")
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let outside = try await NATSConnection.connect(url: TestServer.shared.url, name: "kill-test", logger: testLogger)
            defer { outside.close() }
            var settings = CalendarSimulator.Settings()
            settings.failFirst = 1  // every first attempt fails (retryable): each run then waits on a retry timer
            let calendar = CalendarSimulator(connection: outside, settings: settings, logger: testLogger)
            let calendarTask = Task { try await calendar.run() }
            defer { calendarTask.cancel() }
            let data = TemporaryDirectory("serve")
            let port = LocalNATSServer.freePort()
            var serve = try ChildServe(binary: binary, port: port, dataDirectory: data.path)
            defer { serve.kill() }
            try await serve.waitReady()
            var flow = TestStack.example.objectValue!
            flow["defaults"] = ["retry": ["max_attempts": 3, "initial_ms": 4000, "max_ms": 4000, "jitter": false], "timeout_sec": 60]
            #expect(try await serve.http("POST", "/automation/flows", .object(flow)).0 == 201)
            #expect(try await serve.http("POST", "/automation/flows/calendar-create-event/activate").0 == 200)
            let runs = 5
            for i in 0..<runs {
                let event = CloudEvent(id: "kill-\(i)", source: "assistant", type: EventType.assistantCommandIssued, data: JSONValue.object([
                    "message_id": .string("m-\(i)"), "intent": "calendar.create_event", "entities": ["title": .string("K\(i)"), "start": "s"],
                    "user": ["id": "u"], "channel": ["type": "chat", "conversation_id": "c"],
                ]))
                try outside.publish(subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event))
            }
            try await eventually("every run waits on a retry timer") {
                let failed = try await ledger.read(subject: "ledger.run.>").filter { String(decoding: $0.payload, as: UTF8.self).contains("\"retry_at\"") }
                return failed.count == runs
            }
            serve.kill()  // SIGKILL: no clean stop, timers and memory lost
            #expect(calendar.eventsCreated == 0)
            serve = try ChildServe(binary: binary, port: port, dataDirectory: data.path)
            try await serve.waitReady()
            try await eventually("every run finishes after the restart", timeout: .seconds(40)) {
                let (_, list) = try await serve.http("GET", "/automation/runs?status=SUCCEEDED&limit=100")
                if case .array(let items)? = list["runs"] { return items.count == runs }
                return false
            }
            #expect(calendar.eventsCreated == runs, "one calendar event per run: side effects counted \(calendar.eventsCreated), expected \(runs)")
            for i in 0..<runs {
                #expect(calendar.createdCount(forKey: "\(DerivedID.uuid("calendar-create-event/kill-\(i)"))/create") == 1)
            }
            let outputs = try await ledger.read(subject: Subjects.outputProduced)
            #expect(outputs.count == runs)
            print("kill/restart: runs completed \(runs)/\(runs) started; calendar events \(calendar.eventsCreated)/\(runs) expected; commands received \(calendar.commandsReceived)")
        }
    }
}

/// `ledgerflow serve` as a child process of the test.
struct ChildServe {
    let process = Process()
    let port: Int
    static let token = "kill-test-token"

    init(binary: String, port: Int, dataDirectory: String) throws {
        self.port = port
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--nats-url", TestServer.shared.url, "--http-port", String(port), "--data-dir", dataDirectory, "--admin-token", Self.token]
        var environment = ProcessInfo.processInfo.environment
        environment["LOG_LEVEL"] = ProcessInfo.processInfo.environment["LEDGERFLOW_CHILD_LOG"] ?? "warning"
        process.environment = environment
        let log = "\(dataDirectory)/serve.log"
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func http(_ method: String, _ path: String, _ body: JSONValue? = nil) async throws -> (Int, JSONValue) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 10
        request.setValue("Bearer \(Self.token)", forHTTPHeaderField: "Authorization")
        if let body { request.httpBody = Data(body.compactJSON.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .null)
    }

    func waitReady() async throws {
        try await eventually("ledgerflow serve answers", timeout: .seconds(30)) {
            guard process.isRunning else { throw RuntimeError("ledgerflow serve exited") }
            return (try? await http("GET", "/health"))?.1["engine"]?["ready"] == true
        }
    }
}
