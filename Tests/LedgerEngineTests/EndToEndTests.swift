import Foundation
import LedgerCore
@testable import LedgerEngine
import LedgerNATS
import LedgerProjections
import Synchronization
import Testing

extension Integration {
    /// The seed's sequence (000): chat command → FlowRunStarted → calendar command → CalendarEvent.Created →
    /// step outcome → FlowOutputProduced, over the real parts.
    @Suite struct EndToEndTests {
        @Test func aChatCommandBecomesACalendarEventAndAReply() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            let (created, flow) = try await stack.http("POST", "/automation/flows", TestStack.example)
            #expect(created == 201)
            #expect(flow["status"] == "draft")
            #expect(flow["version"] == 1)
            let (activated, active) = try await stack.http("POST", "/automation/flows/calendar-create-event/activate")
            #expect(activated == 200)
            #expect(active["status"] == "active")

            let outputs = try stack.outside.subscribe(subject: Subjects.outputProduced)
            try await stack.outside.flush()
            try stack.publishCommand(id: "cmd-1", title: "Dentist", suggestions: true)

            let output = try await firstMessage(outputs.messages, timeout: .seconds(15))
            let reply = try JSONDecoder().decode(CloudEvent<FlowOutputProduced>.self, from: Data(output.payload))
            #expect(reply.type == "FlowOutputProduced")
            #expect(reply.data.text == "Listo, creé el evento Dentist.")
            #expect(reply.data.message_id == "m-cmd-1")
            #expect(reply.data.channel == ["type": "chat", "conversation_id": "c-9"])
            #expect(reply.data.data?["suggestions"]?[path: "0.title"] == "Dentist — result 1")

            // The reply is published just before the run's final event; the run is SUCCEEDED right after.
            try await eventually("the run is SUCCEEDED") {
                try await stack.http("GET", "/automation/runs/\(reply.data.run_id)").1["status"] == "SUCCEEDED"
            }
            let (status, run) = try await stack.http("GET", "/automation/runs/\(reply.data.run_id)")
            #expect(status == 200)
            #expect(run["flow_id"] == "calendar-create-event")
            #expect(run["flow_version"] == 1)
            #expect(run["mode"] == "live_run")
            #expect(run["actor"] == "user:u-1")
            #expect(run[path: "trigger.event_id"] == "cmd-1")
            #expect(run[path: "steps.0.step_id"] == "create")
            #expect(run[path: "steps.0.status"] == "SUCCEEDED")
            #expect(run[path: "steps.0.attempts.0.status"] == "SUCCEEDED")
            #expect(run[path: "steps.0.attempts.0.started_at"]?.stringValue != nil)
            #expect(run[path: "steps.0.attempts.0.finished_at"]?.stringValue != nil)
            #expect(run[path: "steps.0.output.event_id"]?.stringValue?.hasPrefix("evt-") == true)
            #expect(run[path: "output.text"] == "Listo, creé el evento Dentist.")
            #expect(run["created_at"]?.stringValue != nil && run["finished_at"]?.stringValue != nil)

            // Every message of the sequence is in the log, in causal order.
            let types = try await stack.log().compactMap { $0.event?.type }
            let expected = [
                "FlowRegistered", "FlowActivated", "AssistantCommandIssued", "FlowRunStarted", "StepAttemptStarted",
                "CalendarCommand.ScheduleEvent", "CalendarEvent.Created", "StepAttemptSucceeded", "FlowOutputProduced",
                "FlowRunSucceeded",
            ]
            var position = 0
            for type in types where position < expected.count && type == expected[position] { position += 1 }
            #expect(position == expected.count, "log order: \(types)")
            #expect(stack.calendar.eventsCreated == 1)

            // Deleting the read models and replaying the log gives the same key/value pairs.
            try await stack.expectRebuildEqualsLive()
        }

        @Test func anEngineRestartBetweenCommandAndAnswerLosesNothing() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(1500)
            let stack = try await TestStack(calendar: settings)
            defer { Task { await stack.stop() } }
            try await stack.activateExample()
            try stack.publishCommand(id: "cmd-restart")
            try await eventually("the calendar command is in the log") {
                try await stack.log().contains { $0.event?.type == EventType.calendarSchedule }
            }
            await stack.stopEngine()
            try await eventually("the calendar answered while the engine was down") {
                try await stack.log().contains { $0.event?.type == EventType.calendarCreated }
            }
            #expect(try stack.runs().first?.status == .running)
            stack.restartEngine()
            let done = try await stack.waitForRuns(1)
            #expect(done.first?.step("create")?.attempts.count == 1)
            let log = try await stack.log()
            #expect(log.filter { $0.event?.type == EventType.outputProduced }.count == 1)
            #expect(log.filter { $0.event?.type == EventType.runSucceeded }.count == 1)
            #expect(stack.calendar.eventsCreated == 1, "one calendar event for one idempotency key")
        }

        @Test func aMalformedCommandIsRecordedAndTheEngineKeepsGoing() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            try await stack.activateExample()
            try stack.outside.publish(subject: Subjects.assistantCommandIssued, payload: Array("{not json".utf8))
            try stack.outside.publish(
                subject: Subjects.assistantCommandIssued,
                payload: Array(#"{"specversion":"1.0","id":"x1","source":"assistant","type":"AssistantCommandIssued","data":{"intent":"calendar.create_event"}}"#.utf8))
            try stack.outside.publish(
                subject: Subjects.assistantCommandIssued,
                payload: Array(#"{"specversion":"1.0","id":"x2","source":"assistant","type":"ChatMessageReceived","data":{}}"#.utf8))
            try stack.publishCommand(id: "cmd-after")
            _ = try await stack.waitForRuns(1)
            try await eventually("three refusals are recorded") { try await stack.ledger.read(subject: Subjects.rejected).count == 3 }
            // Sorted by the position of the refused message (the engine handles a batch concurrently).
            let rejected = try await stack.ledger.read(subject: Subjects.rejected).map {
                try JSONDecoder().decode(CloudEvent<InboundMessageRejected>.self, from: Data($0.payload)).data
            }.sorted { ($0.sequence ?? 0) < ($1.sequence ?? 0) }
            #expect(rejected.count == 3)
            #expect(rejected.allSatisfy { $0.subject == Subjects.assistantCommandIssued && $0.sequence != nil })
            #expect(rejected[0].reason.contains("not valid JSON"))
            #expect(rejected[0].payload == "{not json")
            #expect(rejected[1].reason.contains("missing data field(s): message_id, entities, user.id"))
            #expect(rejected[2].reason.contains("unknown event type \"ChatMessageReceived\""))
        }

        @Test func theSameSignalNeverStartsAFlowTwice() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            try await stack.activateExample()
            try stack.publishCommand(id: "a1", signalID: "sig-1")
            _ = try await stack.waitForRuns(1)
            // Another message (another id, past any Msg-Id window) carrying the same signal.
            try stack.publishCommand(id: "a2", signalID: "sig-1")
            try stack.publishCommand(id: "a3", signalID: "sig-2")
            _ = try await stack.waitForRuns(2)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try stack.runs().count == 2)
            #expect(Set(try stack.runs().compactMap(\.dedup_key)) == ["sig-1", "sig-2"])

            // Long after (an hour, a year): past any Msg-Id window and even with read models that know nothing of it
            // (a new engine on empty LMDB files), the log itself refuses a second start of the same signal.
            let empty = TemporaryDirectory()
            let amnesiac = Engine(ledger: stack.ledger, store: try ReadModelStore(path: empty.path, mapSize: 1 << 30), logger: testLogger)
            let definition = try FlowValidator.validate(TestStack.example).get()
            let again = try await amnesiac.startRun(
                flowID: "calendar-create-event", version: 1, definition: definition, definitionHash: DefinitionHash.of(definition),
                trigger: RunTrigger(kind: "event", event_id: "a9"),
                input: [:], mode: .live, actor: "user:u-1", dedupKey: "sig-1", messageID: nil, channel: nil)
            #expect(again == .duplicate(runID: DerivedID.uuid("calendar-create-event/sig-1")))
            #expect(try stack.runs().count == 2)

            // Manual runs with an idempotency key: the same key, the same run.
            let first = try await stack.http("POST", "/automation/flows/calendar-create-event/run", ["input": ["title": "x", "start": "s"], "idempotency_key": "k1"])
            let second = try await stack.http("POST", "/automation/flows/calendar-create-event/run", ["input": ["title": "x", "start": "s"], "idempotency_key": "k1"])
            #expect(first.0 == 202)
            #expect(second.0 == 202)
            #expect(first.1["run_id"] == second.1["run_id"])
            let (status, run) = try await stack.http("GET", "/automation/runs/\(first.1["run_id"]!.stringValue!)")
            #expect(status == 200)
            #expect(run["actor"] == "tester")
            #expect(run[path: "trigger.kind"] == "manual")
        }

        @Test func aManualRunOverNATSIsAnsweredAndRecorded() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            try await stack.activateExample()
            func ask(_ data: JSONValue) async throws -> JSONValue {
                let request = CloudEvent(source: "ops-script", type: EventType.flowRunRequested, data: data)
                let payload = try EventCodec().encode(request)
                let reply = try await stack.outside.request(subject: Subjects.flowRunRequest, payload: payload, timeout: .seconds(5))
                let answer = try EventCodec().decode(CloudEvent<JSONValue>.self, from: reply.payload)
                return answer.data
            }
            let started = try await ask(["flow_id": "calendar-create-event", "input": ["title": "N", "start": "s"], "mode": "live_run", "idempotency_key": "nats-1"])
            let runID = try #require(started["run_id"]?.stringValue)
            #expect(try await ask(["flow_id": "calendar-create-event", "input": ["title": "N", "start": "s"], "idempotency_key": "nats-1"])["run_id"]?.stringValue == runID)
            #expect(try await ask(["flow_id": "nope"])[path: "error.code"] == "flow_not_found")
            #expect(try await ask(["input": [:]])[path: "error.code"] == "bad_request")
            try await eventually("the run succeeds") { try stack.store.run(runID)?.status == .succeeded }
            #expect(try stack.store.run(runID)?.actor == "service:ops-script")
            try await eventually("requests and replies are recorded") { try await stack.ledger.read(subject: Subjects.requestRecord("flow_run")).count == 4 }
        }

        @Test func theAPIAnswersWithProblems() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            let (noToken, problem) = try await stack.http("GET", "/automation/flows", token: nil)
            #expect(noToken == 401)
            #expect(problem["code"] == "unauthorized")
            #expect(try await stack.http("GET", "/automation/flows", token: "wrong").0 == 401)
            let (invalid, details) = try await stack.http("POST", "/automation/flows", ["id": "f", "steps": [["id": "a", "action": "nope"]]])
            #expect(invalid == 422)
            #expect(details["code"] == "invalid_definition")
            #expect(details[path: "errors.0.path"] == "steps[0].action")
            try await stack.activateExample()
            let (exists, existsProblem) = try await stack.http("POST", "/automation/flows", TestStack.example)
            #expect(exists == 409)
            #expect(existsProblem["code"] == "flow_exists")
            #expect(try await stack.http("GET", "/automation/runs/nope").1["code"] == "run_not_found")
            #expect(try await stack.http("GET", "/automation/flows/nope").1["code"] == "flow_not_found")
            let (badBody, bad) = try await stack.http("POST", "/automation/flows/calendar-create-event/run", ["input": ["title": 3]])
            #expect(badBody == 400)
            #expect(bad["detail"]?.stringValue?.contains("input start is required") == true)
            #expect(try await stack.http("POST", "/automation/flows/calendar-create-event/deactivate").0 == 200)
            let (inactive, state) = try await stack.http("POST", "/automation/flows/calendar-create-event/run", ["input": ["title": "x", "start": "s"]])
            #expect(inactive == 409)
            #expect(state["code"] == "invalid_state")
            var changed = TestStack.example.objectValue!
            changed["version"] = 7
            let (conflict, conflictBody) = try await stack.http("PUT", "/automation/flows/calendar-create-event", .object(changed))
            #expect(conflict == 409)
            #expect(conflictBody["current_version"] == 1)
            changed["version"] = 1
            changed["name"] = "renamed"
            let (updated, newVersion) = try await stack.http("PUT", "/automation/flows/calendar-create-event", .object(changed))
            #expect(updated == 200)
            #expect(newVersion["version"] == 2)
            #expect(try await stack.http("GET", "/automation/flows/calendar-create-event?version=1").1[path: "definition.name"] == "Create a calendar event from chat")
            let (_, health) = try await stack.http("GET", "/health", token: nil)
            #expect(health["status"] == "ok")
            #expect(try await stack.http("GET", "/metrics", token: nil).0 == 401)
            let (metricsStatus, metrics) = try await stack.http("GET", "/metrics")
            #expect(metricsStatus == 200)
            #expect(metrics.stringValue?.contains("ledgerflow_projection_lag ") == true)
            #expect(metrics.stringValue?.contains("# TYPE ledgerflow_runs_started_total counter") == true)
        }
    }

    /// A projector that dies in the middle of a batch (its write transaction aborted before the checkpoint) and
    /// starts again applies no event twice: it ends with the same models as an uninterrupted one.
    @Suite struct ProjectorCrashTests {
        @Test func aProjectorKilledMidBatchAppliesNoEventTwice() async throws {
            let stack = try await TestStack()
            defer { Task { await stack.stop() } }
            try await stack.activateExample()
            for i in 0..<5 { try stack.publishCommand(id: "crash-\(i)") }
            _ = try await stack.waitForRuns(5)
            let end = try stack.store.checkpoint()

            let scratch = TemporaryDirectory("crash")
            let store = try ReadModelStore(path: scratch.path, mapSize: 1 << 30)
            let projector = Projector(ledger: stack.ledger, store: store, batchSize: 4, logger: testLogger)
            let batches = Atomic<Int>(0)
            let committed = Atomic<UInt64>(0)
            store.failpoint.withLock {
                $0 = { through in
                    if batches.add(1, ordering: .relaxed).newValue == 3 { throw RuntimeError("killed mid-batch") }
                    committed.store(through, ordering: .relaxed)
                }
            }
            await #expect(throws: RuntimeError.self) { try await projector.follow(until: end) }
            let survived = try store.checkpoint()
            #expect(survived == committed.load(ordering: .relaxed), "two whole batches survived; the third left no trace")
            #expect(survived < end)
            store.failpoint.withLock { $0 = nil }
            try await Projector(ledger: stack.ledger, store: store, batchSize: 4, logger: testLogger).follow(until: end)
            #expect(try store.checkpoint() == end)
            try expectSameModels(try store.dump(), try stack.store.dump())
            for run in try store.runs(flowID: nil, status: nil, limit: 100) {
                #expect(run.steps.allSatisfy { $0.attempts.count <= 1 }, "no attempt folded twice")
            }
        }
    }
}

extension TestStack {
    /// Replays the log into scratch read models (small batches) and compares them with the live ones key by key.
    func expectRebuildEqualsLive(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let scratch = TemporaryDirectory("rebuild")
        let rebuilt = try ReadModelStore(path: scratch.path, durability: .noSync, mapSize: 1 << 30)
        let end = try store.checkpoint()
        try await Projector(ledger: ledger, store: rebuilt, batchSize: 3, recordsSkips: false, logger: testLogger).follow(until: end)
        #expect(try rebuilt.checkpoint() == end, sourceLocation: sourceLocation)
        try expectSameModels(try rebuilt.dump(), try store.dump(), sourceLocation: sourceLocation)
    }
}

func expectSameModels(
    _ a: [String: [(key: [UInt8], value: [UInt8])]], _ b: [String: [(key: [UInt8], value: [UInt8])]],
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    #expect(a.keys.sorted() == b.keys.sorted(), sourceLocation: sourceLocation)
    for table in a.keys.sorted() {
        let left = a[table]!.map { String(decoding: $0.key, as: UTF8.self) + "=" + String(decoding: $0.value, as: UTF8.self) }
        let right = (b[table] ?? []).map { String(decoding: $0.key, as: UTF8.self) + "=" + String(decoding: $0.value, as: UTF8.self) }
        #expect(left == right, "table \(table) differs", sourceLocation: sourceLocation)
    }
}

/// The first message of a subscription, or an error after `timeout`.
func firstMessage(_ messages: AsyncStream<NATSMessage>, timeout: Duration) async throws -> NATSMessage {
    try await withThrowingTaskGroup(of: NATSMessage?.self) { group in
        group.addTask {
            for await message in messages { return message }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let first else { throw RuntimeError("no message within \(timeout)") }
        return first
    }
}
