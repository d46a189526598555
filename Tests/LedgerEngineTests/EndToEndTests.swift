import Foundation
import LedgerCore
import LedgerDevServices
import LedgerLMDB
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// The seed's sequence (000): chat command → FlowRunStarted → calendar command → CalendarEvent.Created →
    /// step outcome → FlowOutputProduced, over the real parts.
    @Suite struct EndToEndTests {
        @Test func aChatCommandBecomesACalendarEventAndAReply() async throws {
            try await withTestStack { stack in
                let (created, flow) = try await stack.http("POST", "/automation/flows", Fixtures.calendarCreateEvent)
                #expect(created == 201)
                #expect(flow["status"] == "draft")
                #expect(flow["version"] == 1)
                let (activated, active) = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/activate")
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
                    "CalendarCommand.ScheduleEvent", "CalendarEvent.Created", "StepAttemptSucceeded",
                    "FlowOutputProduced",
                    "FlowRunSucceeded",
                ]
                var position = 0
                for type in types where position < expected.count && type == expected[position] { position += 1 }
                #expect(position == expected.count, "log order: \(types)")
                #expect(stack.calendar.eventsCreated == 1)

                // Deleting the read models and replaying the log gives the same key/value pairs.
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func anEngineRestartBetweenCommandAndAnswerLosesNothing() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(1500)
            try await withTestStack(calendar: settings) { stack in
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
        }

        @Test func aMalformedCommandIsRecordedAndTheEngineKeepsGoing() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try stack.outside.publish(subject: Subjects.assistantCommandIssued, payload: Array("{not json".utf8))
                try stack.outside.publish(
                    subject: Subjects.assistantCommandIssued,
                    payload: Array(
                        #"{"specversion":"1.0","id":"x1","source":"assistant","type":"AssistantCommandIssued","data":{"intent":"calendar.create_event"}}"#
                            .utf8))
                try stack.outside.publish(
                    subject: Subjects.assistantCommandIssued,
                    payload: Array(
                        #"{"specversion":"1.0","id":"x2","source":"assistant","type":"ChatMessageReceived","data":{}}"#
                            .utf8))
                try stack.publishCommand(id: "cmd-after")
                _ = try await stack.waitForRuns(1)
                try await eventually("three refusals are recorded") {
                    try await stack.ledger.read(subject: Subjects.rejected).count == 3
                }
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
        }

        @Test func theSameSignalNeverStartsAFlowTwice() async throws {
            try await withTestStack { stack in
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
                let amnesiac = Engine(
                    ledger: stack.ledger, store: try ReadModelStore(path: empty.path, mapSize: 1 << 30),
                    logger: testLogger)
                let definition = try FlowValidator.validate(Fixtures.calendarCreateEvent).get()
                let again = try await amnesiac.startRun(
                    flowID: "calendar-create-event", version: 1, definition: definition,
                    definitionHash: DefinitionHash.of(definition),
                    trigger: RunTrigger(kind: .event, event_id: "a9"),
                    input: [:], mode: .live, actor: "user:u-1", dedupKey: "sig-1", messageID: nil, channel: nil)
                #expect(again == .duplicate(runID: DerivedID.uuid("calendar-create-event/sig-1")))
                #expect(try stack.runs().count == 2)

                // Manual runs with an idempotency key: the same key, the same run.
                let first = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run",
                    ["input": ["title": "x", "start": "s"], "idempotency_key": "k1", "on_behalf_of": "u-1"])
                let second = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run",
                    ["input": ["title": "x", "start": "s"], "idempotency_key": "k1", "on_behalf_of": "u-1"])
                #expect(first.0 == 202)
                #expect(second.0 == 202)
                #expect(first.1["run_id"] == second.1["run_id"])
                let (status, run) = try await stack.http("GET", "/automation/runs/\(first.1["run_id"]!.stringValue!)")
                #expect(status == 200)
                #expect(run["actor"] == "tester")
                #expect(run[path: "trigger.kind"] == "manual")
            }
        }

        @Test func aManualRunOverNATSIsAnsweredAndRecorded() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                func ask(_ data: JSONValue, token: String? = TestStack.operatorToken) async throws -> JSONValue {
                    let request = CloudEvent(source: "ops-script", type: EventType.flowRunRequested, data: data)
                    let payload = try EventCodec().encode(request)
                    let reply = try await stack.outside.request(
                        subject: Subjects.flowRunRequest, payload: payload,
                        headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:], timeout: .seconds(5))
                    let answer = try EventCodec().decode(CloudEvent<JSONValue>.self, from: reply.payload)
                    return answer.data
                }
                let started = try await ask([
                    "flow_id": "calendar-create-event", "input": ["title": "N", "start": "s"], "mode": "live_run",
                    "idempotency_key": "nats-1", "on_behalf_of": "u-1",
                ])
                let runID = try #require(started["run_id"]?.stringValue)
                #expect(
                    try await ask([
                        "flow_id": "calendar-create-event", "input": ["title": "N", "start": "s"],
                        "idempotency_key": "nats-1", "on_behalf_of": "u-1",
                    ])["run_id"]?.stringValue == runID)
                #expect(try await ask(["flow_id": "nope"])[path: "error.code"] == "flow_not_found")
                #expect(try await ask(["input": [:]])[path: "error.code"] == "bad_request")
                // Checked like HTTP: no token, an unknown one, a viewer's.
                let run: JSONValue = ["flow_id": "calendar-create-event", "input": ["title": "N", "start": "s"]]
                #expect(try await ask(run, token: nil)[path: "error.code"] == "unauthorized")
                #expect(try await ask(run, token: "lf_not-a-token")[path: "error.code"] == "unauthorized")
                #expect(try await ask(run, token: TestStack.viewerToken)[path: "error.code"] == "forbidden")
                try await eventually("the run succeeds") { try stack.store.run(runID)?.status == .succeeded }
                // The token's subject is the actor.
                #expect(try stack.store.run(runID)?.actor == "otto")
                #expect(try stack.store.run(runID)?.actor_type == "operator")
                try await eventually("requests and replies are recorded") {
                    try await stack.ledger.read(subject: Subjects.requestRecord("flow_run")).count == 7
                }
                // The token itself is never recorded.
                for message in try await stack.ledger.read(subject: nil, from: 1) {
                    #expect(!String(decoding: message.payload, as: UTF8.self).contains(TestStack.operatorToken))
                }
            }
        }
    }

    /// A projector that dies in the middle of a batch (its write transaction aborted before the checkpoint) and
    /// starts again applies no event twice: it ends with the same models as an uninterrupted one.
    @Suite struct ProjectorCrashTests {
        @Test func aProjectorKilledMidBatchAppliesNoEventTwice() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                for i in 0..<5 { try stack.publishCommand(id: "crash-\(i)") }
                _ = try await stack.waitForRuns(5)
                let end = try stack.store.checkpoint()

                let scratch = TemporaryDirectory("crash")
                let store = try ReadModelStore(path: scratch.path, mapSize: 1 << 30)
                let projector = Projector(ledger: stack.ledger, store: store, batchSize: 4, logger: testLogger)
                let batches = Atomic<Int>(0)
                let committed = Atomic<UInt64>(0)
                store.failpoint.function = { through in
                    if batches.add(1, ordering: .relaxed).newValue == 3 { throw RuntimeError("killed mid-batch") }
                    committed.store(through, ordering: .relaxed)
                }
                await #expect(throws: RuntimeError.self) { try await projector.follow(until: end) }
                let survived = try store.checkpoint()
                #expect(
                    survived == committed.load(ordering: .relaxed),
                    "two whole batches survived; the third left no trace")
                #expect(survived < end)
                store.failpoint.function = nil
                try await Projector(ledger: stack.ledger, store: store, batchSize: 4, logger: testLogger).follow(
                    until: end)
                #expect(try store.checkpoint() == end)
                try expectSameModels(try store.dump(), try stack.store.dump())
                for run in try store.runs(flowID: nil, status: nil, limit: 100) {
                    #expect(run.steps.allSatisfy { $0.attempts.count <= 1 }, "no attempt folded twice")
                }
            }
        }
    }
}
