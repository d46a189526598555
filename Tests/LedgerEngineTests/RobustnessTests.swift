import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// Nothing a message, a definition or a response can do stops the engine (issue 14).
    @Suite struct RobustnessTests {
        func rejections(_ stack: TestStack) async throws -> [InboundMessageRejected] {
            try await stack.ledger.read(subject: Subjects.rejected).compactMap {
                guard case .rejected(let r) = try JSONTree.decode(LedgerEvent.self, from: $0.payload).body else {
                    return nil
                }
                return r
            }
        }

        func envelope(id: String, type: String = EventType.assistantCommandIssued, data: JSONValue) throws -> [UInt8] {
            try EventCodec().encode(CloudEvent(id: id, source: "assistant", type: type, data: data))
        }

        func command(title: JSONValue = "T", signal: String? = nil, entities: JSONValue? = nil) -> JSONValue {
            var data: [String: JSONValue] = [
                "message_id": "m-1", "intent": "calendar.create_event",
                "entities": entities ?? ["title": title, "start": "2026-11-24T10:00:00Z"],
                "user": ["id": "u-1"], "channel": ["type": "chat", "conversation_id": "c-9"],
            ]
            if let signal { data["signal_id"] = .string(signal) }
            return .object(data)
        }

        static func nested(_ depth: Int) -> String {
            String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        }

        @Test func hostileInboundMessagesAreRecordedAndTheNextOneStillRuns() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let subject = Subjects.assistantCommandIssued
                let bad: [(String, [UInt8])] = [
                    ("random bytes", [0xFF, 0x00, 0x7B, 0x22]),
                    (
                        "a number out of range",
                        Array(
                            #"{"specversion":"1.0","id":"n1","source":"a","type":"AssistantCommandIssued","data":{"x":1e999}}"#
                                .utf8)
                    ),
                    (
                        "deep nesting",
                        Array(
                            #"{"specversion":"1.0","id":"d1","source":"a","type":"AssistantCommandIssued","data":{"entities":\#(Self.nested(5000))}}"#
                                .utf8)
                    ),
                    ("a long id", try envelope(id: String(repeating: "i", count: 600), data: command())),
                    (
                        "a long signal_id",
                        try envelope(id: "sig-long", data: command(signal: String(repeating: "s", count: 600)))
                    ),
                    (
                        "a huge entity",
                        try envelope(
                            id: "huge", data: command(title: .string(String(repeating: "x", count: 512 * 1024))))
                    ),
                    ("entities of the wrong type", try envelope(id: "wrong", data: command(entities: "not an object"))),
                    ("an unknown type", try envelope(id: "unknown", type: "Mystery", data: command())),
                ]
                for (_, payload) in bad { try stack.outside.publish(subject: subject, payload: payload) }
                // Broken surrogates are not a reason to refuse a message: each becomes U+FFFD and the run goes on.
                let surrogates =
                    #"{"specversion":"1.0","id":"s1","source":"a","type":"AssistantCommandIssued","data":{"message_id":"\uD800\u0041","intent":"calendar.create_event","entities":{"title":"\uDFFF","start":"2026-11-24T10:00:00Z"},"user":{"id":"u"},"channel":{"type":"chat","conversation_id":"c"}}}"#
                try stack.outside.publish(subject: subject, payload: Array(surrogates.utf8))
                try stack.publishCommand(id: "good-1", title: "After the storm")
                let runs = try await stack.waitForRuns(2)
                #expect(Set(runs.compactMap { $0.input["title"]?.stringValue }) == ["After the storm", "\u{FFFD}"])
                try await eventually("every refusal recorded") { try await rejections(stack).count >= bad.count }
                let recorded = try await rejections(stack)
                #expect(recorded.count == bad.count)
                #expect(recorded.allSatisfy { !$0.reason.isEmpty && $0.sequence != nil })
                #expect(recorded.contains { $0.reason.contains("bytes; inbound messages may be at most") })
                #expect(recorded.contains { $0.reason.contains("signal_id") })
                // The engine is still consuming: another message runs too.
                try stack.publishCommand(id: "good-2", title: "Still here")
                _ = try await stack.waitForRuns(3)
            }
        }

        @Test func aLongSignalIDIsHashedForDedupAndStillDeduplicates() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let signal = String(repeating: "k", count: 250)  // under the identifier limit, over LMDB-friendly keys
                try stack.publishCommand(id: "a", signalID: signal)
                _ = try await stack.waitForRuns(1)
                try stack.publishCommand(id: "b", signalID: signal)
                try stack.publishCommand(id: "c", title: "other")
                _ = try await stack.waitForRuns(2)
                #expect(try stack.runs().count == 2)
                #expect(try stack.store.dedup(flowID: "calendar-create-event", key: signal) != nil)
                #expect(try stack.store.skipped().isEmpty)
            }
        }

        @Test func unreadableAndUnknownEventsOnARunsSubjectDoNotWedgeIt() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(700)
            try await withTestStack(calendar: settings) { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "wedge-1")
                try await eventually("the run is waiting for the calendar") {
                    try stack.runs().first?.status == .running
                }
                let runID = try #require(try stack.runs().first?.run_id)
                let forged = CloudEvent(
                    id: "forged", source: "someone", type: "Mystery", runid: runID, data: JSONValue.object([:]))
                _ = try await stack.ledger.append(
                    OutgoingMessage(subject: Subjects.run(runID), payload: try EventCodec().encode(forged)))
                _ = try await stack.ledger.append(
                    OutgoingMessage(subject: Subjects.run(runID), payload: [0x00, 0x01, 0x02]))
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.run_id == runID)
                let skipped = try stack.store.skipped()
                #expect(skipped.count == 2)
                #expect(skipped.contains { $0.reason.contains("unknown event type") })
                #expect(skipped.contains { $0.reason.contains("not a readable event") })
                // Each skip is recorded once in the log too.
                try await eventually("the skips are in the log") {
                    try await stack.ledger.read(subject: "ledger.skipped.>").count == 2
                }
                // A rebuild skips exactly the same messages: the models are equal.
                let end = try await stack.ledger.lastSequence()
                try await eventually("the models reach the end") { stack.store.progress.position >= end }
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func aStartAcknowledgedAsADuplicateOfItsOwnRetryIsDriven() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let lost = Atomic<Bool>(false)
                stack.ledger.failpoints.afterAppend = { message in
                    guard message.subject.hasPrefix(Subjects.runPrefix), message.expectedLastSubjectSequence == 0,
                        lost.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
                    else { return }
                    throw NATSError(status: 7, message: "injected: the acknowledgement was lost")
                }
                defer { stack.ledger.failpoints.afterAppend = nil }
                try stack.publishCommand(id: "dup-ack")
                let run = try #require(try await stack.waitForRuns(1).first)
                let wasLost = lost.load(ordering: .relaxed)
                #expect(wasLost)
                #expect(run.steps.allSatisfy { $0.status == .succeeded || $0.status == .skipped })
            }
        }

        @Test func aStartTheLogRefusesIsRecordedAndTheConsumerGoesOn() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                stack.ledger.failpoints.beforeAppend = { message in
                    guard message.subject.hasPrefix(Subjects.runPrefix), message.expectedLastSubjectSequence == 0,
                        String(decoding: message.payload, as: UTF8.self).contains("never")
                    else { return }
                    throw NATSError(jetStream: .messageTooLarge, message: "injected: too large")
                }
                defer { stack.ledger.failpoints.beforeAppend = nil }
                try stack.publishCommand(id: "refused-start", title: "never")
                try stack.publishCommand(id: "next-start", title: "next")
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.input["title"] == "next")
                try await eventually("the refused start is recorded") { try await rejections(stack).count == 1 }
                let reason = try #require(try await rejections(stack).first?.reason)
                #expect(reason.contains("could not start flow calendar-create-event"))
            }
        }

        @Test func anInboundMessageThatKeepsFailingIsGivenUpAfterMaxDeliveries() async throws {
            var configuration = TestStack.loopbackAllowed
            configuration.maxDeliveries = 3
            configuration.ackWait = .seconds(1)
            try await withTestStack(configuration: configuration) { stack in
                try await stack.activateExample()
                let attempts = Atomic<Int>(0)
                let crashes = Atomic<Int>(0)
                stack.engine.inboundFailpoint.function = { message in
                    let text = String(decoding: message.payload, as: UTF8.self)
                    if text.contains("\"flaky\"") {
                        attempts.add(1, ordering: .relaxed)
                        return .retry("injected: the read models are unavailable")
                    }
                    // Stops without an answer every time, as a process that crashes while handling it would.
                    if text.contains("\"crashy\""), (message.jetStreamMetadata?.numDelivered ?? 0) <= 3 {
                        crashes.add(1, ordering: .relaxed)
                        return .interrupted
                    }
                    return nil
                }
                try stack.publishCommand(id: "flaky")
                try stack.publishCommand(id: "crashy")
                try stack.publishCommand(id: "fine", title: "unblocked")
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.input["title"] == "unblocked")
                try await eventually("both are given up and recorded", timeout: .seconds(30)) {
                    try await rejections(stack).count == 2
                }
                let reasons = try await rejections(stack).map(\.reason)
                #expect(reasons.contains { $0.hasPrefix("given up after 3 deliveries: injected") })
                #expect(reasons.contains { $0.contains("delivered 4 times without an answer") })
                let (tried, crashed) = (attempts.load(ordering: .relaxed), crashes.load(ordering: .relaxed))
                #expect(tried == 3)
                #expect(crashed == 3)
            }
        }

        @Test func aStepOutputTooLargeForTheLogFailsTheStepInsteadOfWedgingTheRun() async throws {
            try await withTestStack { stack in
                let big = "{{trigger.entities.big}}"
                let flow: JSONValue = [
                    "id": "too-big", "trigger": ["event": "AssistantCommandIssued", "intent": "grow"],
                    "steps": [
                        [
                            "id": "grow", "action": "transform",
                            "with": [
                                "value": [
                                    .string(big), .string(big), .string(big), .string(big), .string(big), .string(big),
                                ]
                            ],
                        ]
                    ],
                    "output": ["text": "done"],
                ]
                #expect(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/too-big/activate").0 == 200)
                let data: JSONValue = [
                    "message_id": "m-big", "intent": "grow",
                    "entities": ["big": .string(String(repeating: "b", count: 200 * 1024))],
                    "user": ["id": "u"], "channel": ["type": "chat", "conversation_id": "c"],
                ]
                try stack.outside.publish(
                    subject: Subjects.assistantCommandIssued, payload: try envelope(id: "big-1", data: data))
                let run = try #require(try await stack.waitForRuns(1, status: .failed).first)
                let kind = run.step("grow")?.attempts.last?.error?.kind
                #expect(kind == .requestTooLarge || kind == .outputTooLarge)
                // The run's start carried the entity once (its input is taken from the trigger, not copied).
                let started = try #require(try await stack.ledger.read(subject: Subjects.run(run.run_id)).first)
                #expect(started.payload.count < 250 * 1024)
            }
        }

        @Test func anOutputIsNotPublishedAgainAfterTheDuplicateWindow() async throws {
            try await withTestStack { stack in
                var config = try await stack.ledger.api.streamInfo(stack.ledger.stream).config
                config.duplicate_window = 1_000_000_000
                try await stack.ledger.api.createOrUpdateStream(config)
                try await stack.activateExample()
                let stopped = Atomic<Bool>(false)
                // The engine stops right after publishing the output, before the run's final event.
                stack.ledger.failpoints.beforeAppend = { message in
                    guard message.subject.hasPrefix(Subjects.runPrefix),
                        String(decoding: message.payload, as: UTF8.self).contains("\"type\":\"FlowRunSucceeded\"")
                    else { return }
                    stopped.store(true, ordering: .relaxed)
                    throw CancellationError()
                }
                try stack.publishCommand(id: "once")
                try await eventually("the output is out and the final event held back") {
                    let outputs = try await stack.ledger.read(subject: Subjects.outputProduced)
                    return stopped.load(ordering: .relaxed) && outputs.count == 1
                }
                await stack.stopEngine()
                stack.ledger.failpoints.beforeAppend = nil
                try await Task.sleep(for: .seconds(2))  // past the stream's duplicate window
                stack.restartEngine()
                _ = try await stack.waitForRuns(1)
                let outputs = try await stack.ledger.read(subject: Subjects.outputProduced)
                #expect(outputs.count == 1)
            }
        }

        @Test func onlyServeMayCreateOrChangeTheStreamAndKeepsWhatAnOperatorSet() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            // An operator tunes the stream, and (by mistake) drops one of Ledgerflow's subjects.
            var config = try await ledger.api.streamInfo(ledger.stream).config
            config.description = "tuned by an operator"
            config.max_age = 2_592_000_000_000_000  // 30 days in nanoseconds: over 2^53 would not survive a Double
            config.subjects = config.subjects.filter { $0 != Subjects.notificationSend } + ["extra.subject"]
            try await ledger.api.createOrUpdateStream(config)
            // Any command but serve attaches to it as it is.
            let attached = try await Ledger.open(url: TestServer.url, clientName: "tail", logger: testLogger)
            attached.connection.close()
            #expect(try await ledger.api.streamInfo(ledger.stream).config == config)
            // serve adds back only what Ledgerflow needs, keeping every setting of the operator's.
            let served = try await Ledger.open(
                url: TestServer.url, clientName: "serve", setup: .createOrUpdate, logger: testLogger)
            served.connection.close()
            let after = try await ledger.api.streamInfo(ledger.stream).config
            #expect(after.subjects.contains("extra.subject"))
            #expect(after.subjects.contains(Subjects.notificationSend))
            #expect(after.description == "tuned by an operator")
            #expect(after.max_age == 2_592_000_000_000_000)
            // Nothing to add: nothing is changed (a 3-replica stream stays 3, whatever the configuration says).
            var three = after
            three.num_replicas = 3
            #expect(LedgerConfiguration().missing(in: three) == nil)
            // Asked for more replicas than the stream has, serve raises them; asked for fewer, it keeps them.
            var clustered = LedgerConfiguration()
            clustered.replicas = 3
            #expect(clustered.missing(in: after) == StreamAdditions(subjects: [], maxMessageSize: nil, replicas: 3))
            #expect(clustered.missing(in: three) == nil)
            // Attaching where there is no stream says what to do.
            try await ledger.api.deleteStream(ledger.stream)
            await #expect(throws: RuntimeError.self) {
                _ = try await Ledger.open(url: TestServer.url, clientName: "tail", logger: testLogger)
            }
        }

        @Test func junkOnAFlowsSubjectDoesNotBlockItsNextChange() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let subject = Subjects.flow("calendar-create-event")
                _ = try await stack.ledger.append(OutgoingMessage(subject: subject, payload: [0x00, 0xFF]))
                let again = LedgerEvent.Body.flowVersionRecorded(
                    FlowVersionRecorded(
                        flow_id: "calendar-create-event", version: 1, definition: Fixtures.calendarCreateEvent,
                        definition_hash: "h", actor: "someone"))
                _ = try await stack.ledger.append(
                    OutgoingMessage(
                        subject: subject,
                        payload: try again.encode(
                            id: "again", time: Timestamp.now(), runid: nil, flowid: nil, flowversion: nil,
                            codec: EventCodec())))
                let end = try #require(try await stack.ledger.read(subject: subject).last?.sequence)
                try await eventually("the models reach the junk") { stack.store.progress.position >= end }
                #expect(try stack.store.flow("calendar-create-event")?.last_sequence == end)
                var changed = Fixtures.calendarCreateEvent.objectValue!
                changed["version"] = 1
                changed["name"] = "changed after the junk"
                let (status, body) = try await stack.http(
                    "PUT", "/automation/flows/calendar-create-event", .object(changed))
                #expect(status == 200, "\(body.compactJSON)")
                #expect(try await stack.http("POST", "/automation/flows/calendar-create-event/deactivate").0 == 200)
                #expect(try stack.store.skipped().count == 1)
            }
        }

        @Test func aRepeatedStartOnALiveRunsSubjectDoesNotWedgeIt() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(700)
            try await withTestStack(calendar: settings) { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "restart-me")
                try await eventually("the run is waiting for the calendar") {
                    try stack.runs().first?.status == .running
                }
                let runID = try #require(try stack.runs().first?.run_id)
                let first = try #require(try await stack.ledger.read(subject: Subjects.run(runID)).first)
                // The very same start again, and a start whose id its flow and key do not derive.
                _ = try await stack.ledger.append(OutgoingMessage(subject: Subjects.run(runID), payload: first.payload))
                let forged = LedgerEvent.Body.runStarted(
                    FlowRunStarted(
                        run_id: runID, flow_id: "calendar-create-event", flow_version: 1, definition_hash: "h",
                        mode: .live,
                        trigger: RunTrigger(kind: .event), actor: "x", input: [:], step_ids: [],
                        dedup_key: "another-signal", message_id: nil, channel: nil))
                _ = try await stack.ledger.append(
                    OutgoingMessage(
                        subject: Subjects.run(runID),
                        payload: try forged.encode(
                            id: "forged", time: Timestamp.now(), runid: runID, flowid: nil, flowversion: nil,
                            codec: EventCodec())))
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.run_id == runID)
                #expect(try stack.store.dedup(flowID: "calendar-create-event", key: "another-signal") == nil)
                #expect(try stack.store.skipped().count == 1)
            }
        }

        @Test func aRunPinnedToADefinitionThatNoLongerValidatesDoesNotStopTheEngine() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                // Written as an older version could have: an interval this version refuses, a run of it in flight.
                let old: JSONValue = [
                    "id": "old", "trigger": ["interval": "400d"],
                    "steps": [["id": "t", "action": "transform", "with": ["value": 1]]],
                ]
                let bodies: [(String, LedgerEvent.Body)] = [
                    (
                        Subjects.flow("old"),
                        .flowVersionRecorded(
                            FlowVersionRecorded(
                                flow_id: "old", version: 1, definition: old, definition_hash: "h", actor: "v0"))
                    ),
                    (
                        Subjects.flow("old"),
                        .flowStatusChanged(FlowStatusChanged(flow_id: "old", version: 1, actor: "v0", status: .active))
                    ),
                    (
                        Subjects.run("old-run"),
                        .runStarted(
                            FlowRunStarted(
                                run_id: "old-run", flow_id: "old", flow_version: 1, definition_hash: "h", mode: .live,
                                trigger: RunTrigger(kind: .manual),
                                actor: "v0", input: [:], step_ids: ["t"], dedup_key: nil, message_id: nil, channel: nil)
                        )
                    ),
                ]
                for (subject, body) in bodies {
                    _ = try await stack.ledger.append(
                        OutgoingMessage(
                            subject: subject,
                            payload: try body.encode(
                                id: EventID.make(), time: Timestamp.now(), runid: nil, flowid: nil, flowversion: nil,
                                codec: EventCodec())))
                }
                await stack.stopEngine()
                stack.restartEngine()
                try await eventually("the engine is ready") { stack.engine.ready.load(ordering: .acquiring) }
                try stack.publishCommand(id: "after-old")
                _ = try await stack.waitForRuns(1)
                #expect(try stack.store.run("old-run")?.status == .running)
            }
        }

        @Test func aDelayWhoseRenderedDurationIsBrokenFailsSayingWhy() async throws {
            try await withTestStack { stack in
                let flow: JSONValue = [
                    "id": "waits", "trigger": ["event": "AssistantCommandIssued", "intent": "wait"],
                    "steps": [["id": "pause", "action": "delay", "with": ["duration": "{{trigger.entities.wait}}"]]],
                ]
                #expect(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/waits/activate").0 == 200)
                for (id, wait) in [("w1", "infs"), ("w2", "1e400s"), ("w3", "soon")] {
                    let data: JSONValue = [
                        "message_id": "m", "intent": "wait", "entities": ["wait": .string(wait)], "user": ["id": "u"],
                        "channel": ["type": "chat", "conversation_id": "c"],
                    ]
                    try stack.outside.publish(
                        subject: Subjects.assistantCommandIssued, payload: try envelope(id: id, data: data))
                }
                let failed = try await stack.waitForRuns(3, status: .failed)
                for run in failed {
                    let error = try #require(run.step("pause")?.attempts.last?.error)
                    #expect(error.kind == .badRequest)
                    #expect(error.message.contains("with.duration"))
                }
            }
        }

        @Test func aRunRequestCannotMakeTheEngineWriteIntoTheLog() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let before = try await stack.ledger.lastSequence()
                let request = try envelope(id: "req", type: EventType.flowRunRequested, data: ["flow_id": "nope"])
                // The event subjects (`events.>` here) are stored too; a "." before a combining mark still ends a token.
                let replies = [
                    "ledger.flow.calendar-create-event", "ledger.rejected.1", "$JS.API.STREAM.PURGE.LEDGER",
                    Subjects.outputProduced, "events.reply", "ledger.\u{301}x",
                ]
                for reply in replies {
                    try stack.outside.publish(subject: Subjects.flowRunRequest, payload: request, reply: reply)
                }
                try await eventually("the requests are recorded") {
                    try await stack.ledger.read(subject: Subjects.requestRecord("flow_run")).count == replies.count
                }
                let written = try await stack.ledger.read(subject: nil, from: before + 1)
                #expect(written.allSatisfy { $0.subject == Subjects.requestRecord("flow_run") })
                let records = try await stack.ledger.read(subject: Subjects.requestRecord("flow_run"))
                #expect(
                    records.allSatisfy {
                        String(decoding: $0.payload, as: UTF8.self).contains("reply_refused\":\"the reply subject")
                    })
            }
        }

        @Test func readModelFilesAreReadableByTheirOwnerOnly() throws {
            let directory = TemporaryDirectory()
            _ = try ReadModelStore(path: "\(directory.path)/lmdb", mapSize: 1 << 24)
            for file in ["data.mdb", "lock.mdb"] {
                let mode = try #require(
                    try FileManager.default.attributesOfItem(atPath: "\(directory.path)/lmdb/\(file)")[
                        .posixPermissions] as? Int)
                #expect(mode & 0o077 == 0, "\(file) has mode \(String(mode, radix: 8))")
            }
        }
    }
}
