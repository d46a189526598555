import Foundation
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerCore
@testable import LedgerEngine

extension Integration {
    /// NATS goes away and comes back (killed and restarted, or paused longer than a publish waits): reads go on from
    /// LMDB, writes are refused with 503 and `Retry-After`, `/health` says so, and everything resumes by itself
    /// (issue 16, item 3). These tests restart the process's shared nats-server, on the same port and store.
    @Suite struct OutageTests {
        @Test func whileNATSIsDownReadsAnswerWritesAreRefusedAndEverythingResumesWhenItReturns() async throws {
            try await withTestStack { stack in
                let target = EffectTarget()
                try await target.start()
                defer { Task { await target.stop() } }
                try await stack.activateExample()
                try stack.publishCommand(id: "before-outage")
                let before = try #require(try await stack.waitForRuns(1).first)
                let waiting = try await WorkerTests().startRun(
                    stack, WorkerTests.callFlow("across-outage", "\(target.base)/slow"))
                try await eventually("the run calls the slow target") { target.total == 1 }

                TestServer.shared.kill()
                defer { try? TestServer.shared.restart() }
                try await eventually("the engine sees NATS gone") { !stack.ledger.isConnected }
                // The run's answer arrives while NATS is away: it is recorded once NATS is back.
                target.gate.store(true, ordering: .releasing)

                let (read, run) = try await stack.http("GET", "/automation/runs/\(before.run_id)")
                #expect(read == 200, "reads answer from the read models")
                #expect(run["status"] == "SUCCEEDED")
                let (health, body) = try await stack.http("GET", "/health")
                #expect(health == 503)
                #expect(body["status"] == "degraded")
                #expect(body["nats"]?["connected"] == false)
                let (refused, problem, headers) = try await stack.client.jsonWithHeaders(
                    "POST", "/automation/flows", WorkerTests.callFlow("during-outage", "\(target.base)/effect"))
                #expect(refused == 503, "\(problem.compactJSON)")
                #expect(
                    headers.contains { $0.key.lowercased() == "retry-after" }, "a refused write says when to try again")
                #expect(problem["detail"]?.stringValue?.contains("NATS") == true)
                // Every other write too: answered (within the client's deadline) 503 with Retry-After, nothing half done.
                var changed = Fixtures.calendarCreateEvent.objectValue!
                changed["version"] = 1
                let writes: [(String, String, JSONValue?)] = [
                    ("PUT", "/automation/flows/calendar-create-event", .object(changed)),
                    ("POST", "/automation/flows/calendar-create-event/deactivate", nil),
                    ("POST", "/automation/flows/across-outage/deactivate", nil),
                    (
                        "POST", "/automation/flows/calendar-create-event/run",
                        ["input": ["title": "x", "start": "s"], "on_behalf_of": "u-1"]
                    ),
                    ("POST", "/automation/runs/\(waiting)/cancel", nil),
                    (
                        "POST", "/admin/api/automations",
                        [
                            "automation_key": "k", "name": "K",
                            "definition": WorkerTests.callFlow("k", "\(target.base)/x"),
                        ]
                    ),
                    (
                        "POST", "/admin/api/automations/calendar-create-event/execute",
                        ["mode": "dry_run", "context": ["title": "x", "start": "s"], "on_behalf_of": "u-1"]
                    ),
                ]
                for (method, path, body) in writes {
                    let answered: (Int, JSONValue, [String: String])
                    do {
                        answered = try await stack.client.jsonWithHeaders(method, path, body)
                    } catch {
                        Issue.record("\(method) \(path) was not answered: \(error)")
                        continue
                    }
                    let (status, answer, fields) = answered
                    #expect(status == 503, "\(method) \(path): \(answer.compactJSON)")
                    #expect(answer["code"] == "unavailable", "\(method) \(path)")
                    #expect(fields.contains { $0.key.lowercased() == "retry-after" }, "\(method) \(path)")
                }

                try TestServer.shared.restart()
                try await eventually("/health is ok again", timeout: .seconds(30)) {
                    try await stack.http("GET", "/health").0 == 200
                }
                // The calendar simulator reconnects on its own schedule; the run below needs it to hear its command.
                try await stack.waitForSimulators()
                try await eventually("the run that waited across the outage succeeds", timeout: .seconds(60)) {
                    try stack.store.run(waiting)?.status == .succeeded
                }
                #expect(target.total == 1, "the call was not sent again")
                do {
                    try await eventually("after-outage", timeout: .seconds(60)) {
                        try stack.publishCommand(id: "after-outage")
                        return try stack.runs().filter { $0.status == .succeeded }.count >= 3
                    }
                } catch {
                    Issue.record(
                        """
                        runs after the outage: \(try stack.runs().map { "\($0.flow_id) \($0.status.rawValue) \($0.trigger.event_id ?? "-") \($0.steps.map { "\($0.step_id) \($0.status.rawValue)" })" }); \
                        calendar commands heard: \(stack.calendar.commandsReceived), listening: \(await stack.calendar.isListening())
                        """
                    )
                    throw error
                }
                let (created, _) = try await stack.http(
                    "POST", "/automation/flows", WorkerTests.callFlow("after-outage", "\(target.base)/effect"))
                #expect(created == 201, "writes are accepted again")
                // Nothing the refused writes asked for happened.
                let (_, flow) = try await stack.http("GET", "/automation/flows/calendar-create-event")
                #expect(flow["version"] == 1)
                #expect(flow["status"] == "active")
                #expect(try await stack.http("GET", "/automation/flows/k").0 == 404)
                #expect(try stack.store.run(waiting)?.cancel_requested_by == nil)
            }
        }

        /// A server that hangs (SIGSTOP) longer than an append waits for its acknowledgement: the appends in flight
        /// time out and are tried again, and the runs end once, as if nothing had happened.
        @Test func aServerPausedLongerThanAPublishWaitsLosesAndDoublesNothing() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                for i in 0..<5 { try stack.publishCommand(id: "before-pause-\(i)") }
                _ = try await stack.waitForRuns(5, timeout: .seconds(30))
                for i in 0..<10 { try stack.publishCommand(id: "into-pause-\(i)") }
                TestServer.shared.pause()
                defer { TestServer.shared.resume() }
                // Longer than the 10 s an append waits for its acknowledgement.
                try await Task.sleep(for: .seconds(12))
                TestServer.shared.resume()
                for i in 0..<5 { try stack.publishCommand(id: "after-pause-\(i)") }
                let runs = try await stack.waitForRuns(20, timeout: .seconds(90))
                #expect(runs.count == 20)
                #expect(stack.calendar.eventsCreated == 20, "one calendar event per run")
                var starts: [String: Int] = [:]
                for message in try await stack.ledger.read(subject: "ledger.run.>") {
                    let event = try JSONDecoder().decode(LedgerEvent.self, from: Data(message.payload))
                    if case .runStarted(let e) = event.body { starts[e.run_id, default: 0] += 1 }
                }
                #expect(starts.count == 20 && starts.values.allSatisfy { $0 == 1 })
            }
        }
    }
}

/// An answer is acknowledged only once its run applied it (issue 16: a graceful shutdown never acknowledges an
/// answer it did not apply).
@Suite struct AnswerAcknowledgementTests {
    @Test func anAnswerSentToAStoppedDriverIsNotAcknowledgedAndIsDeliveredAgain() async throws {
        let (_, mailbox) = AsyncStream<RunMail>.makeStream()
        mailbox.finish()  // the driver stopped (the engine is stopping, or the run changed hands)
        let driver = RunDriver(runID: "r", mailbox: mailbox, position: 1)
        let answer = RunCommand.recordResult(.step("s"), attempt: 1, result: .success(.null), sourceSequence: 9)
        await #expect(throws: AnswerNotApplied.self) {
            try await Engine.handAnswer(answer) { driver.send($0) }
        }
    }

    @Test func anAnswerTheDriverAppliedIsAcknowledged() async throws {
        let (stream, mailbox) = AsyncStream<RunMail>.makeStream()
        let driver = RunDriver(runID: "r", mailbox: mailbox, position: 1)
        let consumer = Task {
            for await mail in stream {
                if case .input(_, let done) = mail { done?(true) }
            }
        }
        defer { consumer.cancel() }
        let answer = RunCommand.recordResult(.step("s"), attempt: 1, result: .success(.null), sourceSequence: 9)
        try await Engine.handAnswer(answer) { driver.send($0) }
        mailbox.finish()
    }
}
