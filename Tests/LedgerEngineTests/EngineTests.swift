import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// The flow engine (issue 3) over the real parts.
    @Suite struct EngineTests {
        static func calendarStep(_ id: String, dependsOn: [String] = [], compensate: Bool = false) -> JSONValue {
            var step: [String: JSONValue] = [
                "id": .string(id), "action": "calendar.schedule_event",
                "with": ["title": .string("\(id) {{trigger.entities.title}}"), "start": "{{trigger.entities.start}}"],
                "depends_on": .array(dependsOn.map { .string($0) }),
            ]
            if compensate {
                step["compensate"] = [
                    "action": "calendar.cancel_event", "with": ["event_id": .string("{{steps.\(id).output.event_id}}")],
                ]
            }
            return .object(step)
        }

        static func flow(
            _ id: String, intent: String, steps: [JSONValue], output: JSONValue = ["text": "ok"],
            retry: JSONValue? = nil
        ) -> JSONValue {
            var flow: [String: JSONValue] = [
                "id": .string(id), "trigger": ["event": "AssistantCommandIssued", "intent": .string(intent)],
                "steps": .array(steps), "output": output,
            ]
            flow["defaults"] = [
                "retry": retry ?? ["max_attempts": 3, "initial_ms": 50, "max_ms": 200], "timeout_sec": 30,
            ]
            return .object(flow)
        }

        func register(_ stack: TestStack, _ flow: JSONValue) async throws {
            let (created, body) = try await stack.http("POST", "/automation/flows", flow)
            #expect(created == 201, "\(body.compactJSON)")
            #expect(try await stack.http("POST", "/automation/flows/\(flow["id"]!.stringValue!)/activate").0 == 200)
        }

        func publish(
            _ stack: TestStack, intent: String, id: String,
            entities: JSONValue = ["title": "T", "start": "2026-11-24T10:00:00Z"]
        ) throws {
            let data: JSONValue = [
                "message_id": .string("m-\(id)"), "intent": .string(intent), "entities": entities,
                "user": ["id": "u-1"],
                "channel": ["type": "chat", "conversation_id": "c"],
            ]
            let event = CloudEvent(id: id, source: "assistant", type: EventType.assistantCommandIssued, data: data)
            try stack.outside.publish(subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event))
        }

        func types(_ stack: TestStack, run: String) async throws -> [String] {
            try await stack.ledger.read(subject: Subjects.run(run)).compactMap {
                let event = try JSONDecoder().decode(LedgerEvent.self, from: Data($0.payload))
                return event.type + (event.body.stepID.map { ":" + $0 } ?? "")
            }
        }

        @Test func aDAGWithAParallelBranchFansOutAndIn() async throws {
            try await withTestStack { stack in
                try await register(
                    stack,
                    Self.flow(
                        "dag", intent: "dag",
                        steps: [
                            Self.calendarStep("a"),
                            [
                                "id": "b", "action": "transform", "depends_on": ["a"],
                                "with": ["value": ["from_a": "{{steps.a.output.event_id}}"]],
                            ],
                            [
                                "id": "c", "action": "discovery.search", "depends_on": ["a"],
                                "with": ["query": "{{trigger.entities.title}}", "top_n": 2],
                            ],
                            [
                                "id": "d", "action": "transform", "depends_on": ["b", "c"],
                                "with": [
                                    "value": ["a": "{{steps.b.output.from_a}}", "n": "{{steps.c.output.results}}"]
                                ],
                            ],
                        ], output: ["text": "{{steps.d.output.a}}"]))
                try publish(stack, intent: "dag", id: "dag-1")
                let run = try #require(try await stack.waitForRuns(1).first)
                let log = try await types(stack, run: run.run_id)
                let position = { (entry: String) in log.firstIndex(of: entry) ?? -1 }
                #expect(position("StepAttemptSucceeded:a") < position("StepAttemptSucceeded:b"))
                #expect(position("StepAttemptSucceeded:a") < position("StepAttemptStarted:c"))
                #expect(position("StepAttemptSucceeded:b") < position("StepAttemptSucceeded:d"))
                #expect(position("StepAttemptSucceeded:c") < position("StepAttemptSucceeded:d"))
                #expect(run.step("d")?.output?["a"] == run.step("a")?.output?["event_id"])
                #expect(run.step("d")?.output?[path: "n.1.title"] == "T — result 2")
                #expect(run.output?["text"] == run.step("a")?.output?["event_id"])
            }
        }

        @Test func theParallelExampleRunsDelayNotifyAndFanIn() async throws {
            try await withTestStack { stack in
                try await register(stack, try Fixtures.flow("parallel-steps"))
                try publish(
                    stack, intent: "meeting.prepare", id: "prep-1",
                    entities: ["title": "Budget", "start": "2026-12-01T09:00:00Z"])
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.input["attendees"] == [], "input defaults apply")
                #expect(run.step("pause")?.output?["waited_ms"] == 200)
                let pause = try #require(run.step("pause")?.attempts.first)
                let waited = Timestamp.parse(pause.finished_at!)!.timeIntervalSince(Timestamp.parse(pause.started_at)!)
                #expect(waited >= 0.19, "the delay really waited")
                #expect(run.step("summary")?.output?["notified"] == run.step("tell")?.output?["notification_id"])
                #expect(run.output?["text"]?.stringValue?.hasPrefix("Ready: Budget, with evt-") == true)
                let notifications = try await stack.ledger.read(subject: Subjects.notificationSend)
                #expect(notifications.count == 1)
                // A message from another channel type does not match the trigger's `match`.
                let other: JSONValue = [
                    "message_id": "m-x", "intent": "meeting.prepare", "entities": ["title": "X", "start": "s"],
                    "user": ["id": "u"],
                    "channel": ["type": "email", "conversation_id": "c"],
                ]
                try stack.outside.publish(
                    subject: Subjects.assistantCommandIssued,
                    payload: try EventCodec().encode(
                        CloudEvent(id: "prep-2", source: "a", type: EventType.assistantCommandIssued, data: other)))
                try await Task.sleep(for: .milliseconds(300))
                #expect(try stack.runs().count == 1)
            }
        }

        @Test func aNewVersionNeverChangesARunAlreadyStarted() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(800)
            try await withTestStack(calendar: settings) { stack in
                try await register(
                    stack,
                    Self.flow(
                        "pinned", intent: "pinned", steps: [Self.calendarStep("a")], output: ["text": "version one"]))
                try publish(stack, intent: "pinned", id: "pin-1")
                try await eventually("the run waits for the calendar") {
                    try stack.runs().first?.step("a")?.status == .running
                }
                var changed = Self.flow(
                    "pinned", intent: "pinned", steps: [Self.calendarStep("a")], output: ["text": "version two"]
                ).objectValue!
                changed["version"] = 1
                let (updated, _) = try await stack.http("PUT", "/automation/flows/pinned", .object(changed))
                #expect(updated == 200)
                #expect(try await stack.http("POST", "/automation/flows/pinned/activate").0 == 200)
                let first = try #require(try await stack.waitForRuns(1).first)
                #expect(first.flow_version == 1)
                #expect(first.output?["text"] == "version one", "pinned to the version it started with")
                try publish(stack, intent: "pinned", id: "pin-2")
                let runs = try await stack.waitForRuns(2)
                let second = try #require(runs.first { $0.run_id != first.run_id })
                #expect(second.flow_version == 2)
                #expect(second.output?["text"] == "version two")
                #expect(second.definition_hash != first.definition_hash)
            }
        }

        @Test func aStepFailingTwiceThenSucceeding() async throws {
            var settings = CalendarSimulator.Settings()
            settings.failFirst = 2
            try await withTestStack(calendar: settings) { stack in
                try await register(stack, Self.flow("flaky", intent: "flaky", steps: [Self.calendarStep("a")]))
                try publish(stack, intent: "flaky", id: "flaky-1")
                let run = try #require(try await stack.waitForRuns(1).first)
                let attempts = try #require(run.step("a")?.attempts)
                #expect(attempts.map(\.status) == [.failed, .failed, .succeeded])
                #expect(attempts[0].error?.kind == .calendarCreateFailed)
                #expect(attempts[0].retry_at != nil)
                #expect(stack.calendar.eventsCreated == 1)
                #expect(stack.calendar.commandsReceived == 3)
                let log = try await types(stack, run: run.run_id)
                #expect(log.filter { $0 == "StepAttemptFailed:a" }.count == 2, "each attempt is its own event")
            }
        }

        /// Retry back-offs wait on the engine's clock: an hour of back-off passes when the test moves the clock on,
        /// and not a moment before.
        @Test func anHourOfBackOffPassesOnTheEnginesClock() async throws {
            var settings = CalendarSimulator.Settings()
            settings.failFirst = 1
            let clock = ManualClock()
            var configuration = TestStack.loopbackAllowed
            configuration.clock = ManualRunClock(clock)
            try await withTestStack(calendar: settings, configuration: configuration) { stack in
                let hour: JSONValue = [
                    "max_attempts": 2, "backoff": "fixed", "initial_ms": 3_600_000, "max_ms": 3_600_000,
                ]
                try await register(
                    stack, Self.flow("patient", intent: "patient", steps: [Self.calendarStep("a")], retry: hour))
                try publish(stack, intent: "patient", id: "patient-1")
                try await eventually("the first attempt failed and waits an hour") {
                    try stack.runs().first?.step("a")?.attempts.first?.retry_at != nil
                }
                let waiting = try #require(try stack.runs().first)
                #expect(waiting.status == .running)
                #expect(stack.calendar.commandsReceived == 1)
                let retryAt = try #require(waiting.step("a")?.attempts.first?.retry_at.flatMap(Timestamp.parse))
                // An hour of back-off, less its jitter: far longer than this test takes.
                let wait = retryAt.timeIntervalSince(configuration.clock.now)
                #expect(wait > 1_800)
                clock.advance(by: .seconds(Int64(wait) - 1))
                try await Task.sleep(for: .milliseconds(300))
                #expect(stack.calendar.commandsReceived == 1, "a second before the retry is due, nothing is sent again")
                clock.advance(by: .seconds(2))
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.step("a")?.attempts.map(\.status) == [.failed, .succeeded])
                #expect(stack.calendar.commandsReceived == 2)
            }
        }

        @Test func aNonRetryableFailureCompensatesInReverseOrder() async throws {
            try await withTestStack { stack in
                try await register(
                    stack,
                    Self.flow(
                        "undo", intent: "undo",
                        steps: [
                            Self.calendarStep("first", compensate: true),
                            Self.calendarStep("second", dependsOn: ["first"], compensate: true),
                            [
                                "id": "broken", "action": "transform", "depends_on": ["second"],
                                "with": ["value": "x {{steps.second.output.nothing_here}}"],
                            ],
                        ]))
                try publish(stack, intent: "undo", id: "undo-1")
                let run = try #require(try await stack.waitForRuns(1, status: .failed).first)
                #expect(run.error?.step_id == "broken")
                #expect(run.step("broken")?.attempts.count == 1, "a template error is not retried")
                #expect(run.step("first")?.status == .compensated)
                #expect(run.step("second")?.status == .compensated)
                let log = try await types(stack, run: run.run_id)
                let undoSecond = try #require(log.firstIndex(of: "CompensationAttemptSucceeded:second"))
                let undoFirst = try #require(log.firstIndex(of: "CompensationAttemptStarted:first"))
                #expect(undoSecond < undoFirst, "the newest completed step is undone first: \(log)")
                #expect(log.last == "FlowRunFailed")
                let cancels = try await stack.ledger.read(subject: Subjects.calendarCancel)
                #expect(cancels.count == 2)
                let (_, dlq) = try await stack.http("GET", "/automation/dlq")
                #expect(dlq[path: "dead_letters.0.run_id"]?.stringValue == run.run_id)
                #expect(dlq[path: "dead_letters.0.failed_step"] == "broken")
                #expect(dlq[path: "dead_letters.0.attempts.0.error.kind"] == "template")
                #expect(
                    dlq[path: "dead_letters.0.compensations"].map { if case .array(let a) = $0 { a.count } else { 0 } }
                        == 2)
            }
        }

        @Test func cancellingARunAbandonsItsStepsAndCompensates() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .seconds(3)
            try await withTestStack(calendar: settings) { stack in
                try await register(
                    stack,
                    Self.flow(
                        "slow", intent: "slow",
                        steps: [
                            [
                                "id": "note", "action": "notify", "with": ["message": "starting"],
                                "compensate": ["action": "notify", "with": ["message": "cancelled"]],
                            ],
                            Self.calendarStep("wait", dependsOn: ["note"]),
                        ]))
                try publish(stack, intent: "slow", id: "slow-1")
                try await eventually("the calendar step is running") {
                    try stack.runs().first?.step("wait")?.status == .running
                }
                let runID = try #require(try stack.runs().first?.run_id)
                let (accepted, _) = try await stack.http(
                    "POST", "/automation/runs/\(runID)/cancel", ["reason": "user changed plans"])
                #expect(accepted == 202)
                let run = try #require(try await stack.waitForRuns(1, status: .cancelled).first)
                #expect(run.step("wait")?.status == .failed)
                #expect(run.step("wait")?.attempts.last?.error?.kind == .cancelled)
                #expect(run.step("note")?.status == .compensated)
                #expect(run.error?.message.contains("user changed plans") == true)
                let (again, problem) = try await stack.http("POST", "/automation/runs/\(runID)/cancel")
                #expect(again == 409)
                #expect(problem["code"] == "invalid_state")
                // The calendar's late answer is kept in the log and changes nothing.
                try await eventually("the late answer arrives", timeout: .seconds(10)) {
                    try await stack.ledger.read(subject: Subjects.calendarCreated).count == 1
                }
                try await Task.sleep(for: .milliseconds(200))
                #expect(try stack.store.run(runID)?.status == .cancelled)
            }
        }

        @Test func aDryRunWalksTheGraphWithoutSideEffects() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let (accepted, answer) = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run",
                    ["input": ["title": "Dry", "start": "s"], "mode": "dry_run", "on_behalf_of": "u-1"])
                #expect(accepted == 202)
                let runID = try #require(answer["run_id"]?.stringValue)
                try await eventually("the dry run finishes") { try stack.store.run(runID)?.status == .succeeded }
                let run = try #require(try stack.store.run(runID))
                #expect(run.mode == .dry)
                #expect(run.step("create")?.output?["simulated"] == true)
                #expect(
                    try await stack.ledger.read(subject: Subjects.calendarCommands).isEmpty,
                    "nothing sent to the calendar")
                #expect(
                    try await stack.ledger.read(subject: Subjects.outputProduced).isEmpty, "no output for the assistant"
                )
                #expect(stack.calendar.commandsReceived == 0)
                #expect(stack.discovery.requestsServed == 0)
            }
        }

        @Test func aDeadLetterIsRedrivenFromItsFailedStepWithoutRepeatingEarlierEffects() async throws {
            try await withTestStack { stack in
                // The second step calls an HTTP endpoint that answers 404 until the flow it asks for exists.
                try await register(
                    stack,
                    Self.flow(
                        "redrive", intent: "redrive",
                        steps: [
                            Self.calendarStep("book"),
                            [
                                "id": "check", "action": "http.request", "depends_on": ["book"],
                                "with": [
                                    "method": "GET",
                                    "url": .string("http://127.0.0.1:\(stack.port)/automation/flows/needed-later"),
                                    "headers": ["Authorization": .string("Bearer \(stack.token)")],
                                ],
                            ],
                        ], retry: ["max_attempts": 1]))
                try publish(stack, intent: "redrive", id: "redrive-1")
                let failed = try #require(try await stack.waitForRuns(1, status: .failed).first)
                #expect(failed.step("check")?.attempts.first?.error?.kind == .http(404))
                #expect(try await stack.http("GET", "/automation/dlq").1[path: "dead_letters.0.failed_step"] == "check")
                // Make the endpoint answer, then redrive from the failed step.
                try await register(
                    stack,
                    Self.flow(
                        "needed-later", intent: "unused",
                        steps: [["id": "x", "action": "transform", "with": ["value": 1]]]))
                let (accepted, _) = try await stack.http(
                    "POST", "/automation/runs/\(failed.run_id)/redrive", ["from_step": "check"])
                #expect(accepted == 202)
                try await eventually("the redriven run succeeds") {
                    try stack.store.run(failed.run_id)?.status == .succeeded
                }
                let run = try #require(try stack.store.run(failed.run_id))
                #expect(run.step("book")?.attempts.count == 1, "the calendar step is not run again")
                #expect(run.step("check")?.attempts.last?.status == .succeeded)
                #expect(stack.calendar.commandsReceived == 1)
                #expect(run.redrives >= 1)
                #expect(try await stack.http("GET", "/automation/dlq").1["total"] == 0)
                #expect(try await stack.http("POST", "/automation/runs/\(failed.run_id)/redrive").0 == 409)
            }
        }

        @Test func aCircuitOpensAfterRepeatedFailuresAndFailsFast() async throws {
            try await withTestStack { stack in
                let closed = LocalNATSServer.freePort()
                try await register(
                    stack,
                    Self.flow(
                        "breaker", intent: "breaker",
                        steps: [
                            [
                                "id": "call", "action": "http.request",
                                "with": ["method": "GET", "url": .string("http://127.0.0.1:\(closed)/")],
                            ]
                        ], retry: ["max_attempts": 1]))
                // One run after another, so each failure is counted before the next call.
                for i in 0..<7 {
                    try publish(stack, intent: "breaker", id: "breaker-\(i)")
                    _ = try await stack.waitForRuns(i + 1, status: .failed)
                }
                let runs = try await stack.waitForRuns(7, status: .failed)
                let kinds = runs.compactMap { $0.step("call")?.attempts.first?.error?.kind }
                #expect(kinds.filter { $0 == .unavailable }.count >= 5)
                #expect(kinds.contains(.circuitOpen), "\(kinds)")
                #expect(stack.engine.breakers.state("http.request:127.0.0.1:\(closed)") == "open")
            }
        }
    }
}
