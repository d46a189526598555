import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// Issue 18: other services' events, calendar, discovery and notifications over the real parts.
    @Suite struct IntegrationTests {
        func register(_ stack: TestStack, _ flow: JSONValue) async throws {
            let (created, body) = try await stack.http("POST", "/automation/flows", flow)
            try #require(created == 201, "\(body.compactJSON)")
            try #require(
                try await stack.http("POST", "/automation/flows/\(flow["id"]!.stringValue!)/activate").0 == 200)
        }

        /// Publishes `data` as a CloudEvent of `type` on `subject`, as another service would (a plain publish).
        func publish(
            _ stack: TestStack, subject: String, type: String, id: String, data: JSONValue, msgID: Bool = true
        ) throws {
            let event = CloudEvent(id: id, source: "orders-service", type: type, data: data)
            try stack.outside.publish(
                subject: subject, payload: try EventCodec().encode(event),
                headers: msgID ? ["Nats-Msg-Id": id] : [:])
        }

        func records(_ stack: TestStack, prefix: String) async throws -> [CloudEvent<JSONValue>] {
            try await stack.log().filter { $0.subject.hasPrefix(prefix) }.compactMap(\.event)
        }

        static let orderFlow: JSONValue = [
            "id": "order-shipped", "trigger": ["event": "OrderShipped", "match": ["data.country": "ES"]],
            "steps": [
                [
                    "id": "tell", "action": "notify",
                    "with": ["message": "Order {{trigger.order_id}} shipped", "channel": "email"],
                ]
            ],
            "output": ["text": "notified about {{trigger.order_id}}"],
        ]

        @Test func anEventOfAnotherServiceStartsTheFlowsNamingItsTypeAndNoneIsSkippedInSilence() async throws {
            try await withTestStack { stack in
                try await register(stack, Self.orderFlow)
                try publish(
                    stack, subject: "events.orders.shipped", type: "OrderShipped", id: "o-1",
                    data: ["order_id": "A-17", "country": "ES"])
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.flow_id == "order-shipped")
                #expect(run.trigger.kind == .event)
                #expect(run.trigger.event_type == "OrderShipped")
                #expect(run.output?["text"] == "notified about A-17")
                #expect(run.actor == "service:orders-service")

                // The notification service's answer is recorded on the notify step, once.
                try await eventually("the notification's answer on the step") {
                    guard let step = try stack.store.run(run.run_id)?.step("tell") else { return false }
                    return step.output?["status"] == "sent" || step.late_results?.first?.output["status"] == "sent"
                }
                #expect(stack.notifications.notificationsSent == 1)

                // The same event again (a re-publish without a message id, so the stream keeps both): no second run.
                try publish(
                    stack, subject: "events.orders.shipped", type: "OrderShipped", id: "o-1",
                    data: ["order_id": "A-17", "country": "ES"], msgID: false)
                // An event no flow takes (its match fails; a type nobody names), a bad one (not JSON; data not an
                // object): each recorded with its reason, and the engine goes on with the next one.
                try publish(
                    stack, subject: "events.orders.shipped", type: "OrderShipped", id: "o-2",
                    data: ["order_id": "B-2", "country": "FR"])
                try publish(stack, subject: "events.stock.low", type: "StockLow", id: "s-1", data: ["sku": "X"])
                try stack.outside.publish(subject: "events.garbage", payload: Array("{not json".utf8))
                try publish(stack, subject: "events.orders.shipped", type: "OrderShipped", id: "o-3", data: [1, 2])
                try publish(
                    stack, subject: "events.orders.shipped", type: "OrderShipped", id: "o-4",
                    data: ["order_id": "C-3", "country": "ES"])
                let runs = try await stack.waitForRuns(2)
                #expect(Set(runs.map { $0.input["order_id"] }) == ["A-17", "C-3"])

                try await eventually("two unhandled and two refused records") {
                    let unhandled = try await records(stack, prefix: "ledger.unhandled.").count
                    let refused = try await records(stack, prefix: "ledger.rejected.").count
                    return unhandled == 2 && refused == 2
                }
                let unhandled = try await records(stack, prefix: "ledger.unhandled.")
                #expect(unhandled.allSatisfy { $0.type == EventType.eventUnhandled })
                #expect(Set(unhandled.compactMap { $0.data["type"]?.stringValue }) == ["OrderShipped", "StockLow"])
                #expect(
                    unhandled.allSatisfy {
                        $0.data["reason"]?.stringValue?.contains("no active flow's trigger names event type") == true
                    })
                let refused = try await records(stack, prefix: "ledger.rejected.").compactMap {
                    $0.data["reason"]?.stringValue
                }
                #expect(refused.contains { $0.contains("is not valid JSON") }, "\(refused)")
                #expect(refused.contains { $0.contains("data must be a JSON object") }, "\(refused)")
                #expect(try stack.runs().count == 2)

                let (_, text) = try await stack.client.text("GET", "/metrics")
                #expect(PrometheusText(text).value("ledgerflow_inbound_unhandled_total") == 2)
            }
        }

        @Test func aChatCommandNoFlowTakesIsRecordedWithItsIntent() async throws {
            try await withTestStack { stack in
                try stack.publishCommand(id: "nobody", intent: "weather.today")
                try await eventually("the unhandled record") {
                    try await records(stack, prefix: "ledger.unhandled.").count == 1
                }
                let record = try #require(try await records(stack, prefix: "ledger.unhandled.").first)
                #expect(record.data["reason"]?.stringValue?.contains("intent weather.today") == true)
                #expect(record.data["event_id"] == "nobody")
            }
        }

        @Test func aManualRunOfAnEventFlowGetsTheEventsShape() async throws {
            try await withTestStack { stack in
                try await register(stack, Self.orderFlow)
                let (status, body) = try await stack.http(
                    "POST", "/automation/flows/order-shipped/run?wait=true",
                    ["input": ["order_id": "M-1", "country": "PT"], "mode": "live_run"])
                #expect(status == 200, "\(body.compactJSON)")
                // A manual run is not held to the trigger's match; its trigger data is the context itself.
                #expect(body["output"]?["text"] == "notified about M-1")
                #expect(body[path: "trigger.data.order_id"] == "M-1")
            }
        }

        static func calendarFlow(timeout: Int = 30) -> JSONValue {
            [
                "id": "reschedule", "trigger": ["event": "AssistantCommandIssued", "intent": "calendar.reschedule"],
                "defaults": [
                    "retry": ["max_attempts": 2, "initial_ms": 50, "max_ms": 100],
                    "timeout_sec": .number(Double(timeout)),
                ],
                "steps": [
                    [
                        "id": "create", "action": "calendar.schedule_event",
                        "with": ["title": "{{trigger.entities.title}}", "start": "{{trigger.entities.start}}"],
                    ],
                    [
                        "id": "move", "action": "calendar.update_event", "depends_on": ["create"],
                        "with": ["event_id": "{{steps.create.output.event_id}}", "start": "2026-12-02T10:00:00Z"],
                    ],
                    [
                        "id": "drop", "action": "calendar.cancel_event", "depends_on": ["move"],
                        "with": ["event_id": "{{steps.create.output.event_id}}"],
                    ],
                ],
                "output": ["text": "moved and cancelled {{steps.create.output.event_id}}"],
            ]
        }

        @Test func scheduleUpdateAndCancelAreEachAnsweredByTheirOutcomeAndALateDuplicateChangesNothing() async throws {
            try await withTestStack { stack in
                try await register(stack, Self.calendarFlow())
                try stack.publishCommand(id: "cal-1", intent: "calendar.reschedule")
                let run = try #require(try await stack.waitForRuns(1).first)
                let eventID = try #require(run.step("create")?.output?["event_id"]?.stringValue)
                #expect(run.step("move")?.output?["start"] == "2026-12-02T10:00:00Z")
                #expect(run.step("drop")?.output?["event_id"] == .string(eventID))
                #expect(run.output?["text"] == .string("moved and cancelled \(eventID)"))
                let commands = try await stack.log().filter { $0.subject.hasPrefix("calendar.command.") }
                #expect(
                    commands.compactMap { $0.event?.type } == [
                        EventType.calendarSchedule, EventType.calendarUpdate, EventType.calendarCancel,
                    ])
                #expect(
                    commands.allSatisfy {
                        $0.event?.data["command_id"] != nil && $0.event?.data["idempotency_key"] != nil
                    })

                // The calendar answers the first command again, late: it is kept in the log and changes nothing.
                let commandID = try #require(run.step("create")?.command_id)
                let duplicate = CloudEvent(
                    source: "calendar", type: EventType.calendarCreated,
                    data: ["command_id": .string(commandID), "event_id": "evt-other"] as JSONValue)
                try stack.outside.publish(
                    subject: Subjects.calendarCreated, payload: try EventCodec().encode(duplicate))
                try await eventually("the duplicate outcome stored and consumed") {
                    let position = try await stack.log().last { $0.event?.id == duplicate.id }?.sequence ?? .max
                    return stack.store.progress.position >= position
                }
                try await Task.sleep(for: .milliseconds(300))
                let after = try #require(try stack.store.run(run.run_id))
                #expect(after.step("create")?.output?["event_id"] == .string(eventID))
                #expect(after.step("create")?.attempts.count == 1)
                #expect(after.step("create")?.late_results == nil)
            }
        }

        @Test func aCalendarThatNeverAnswersTimesTheStepOutAndTheRunFails() async throws {
            var silent = CalendarSimulator.Settings()
            silent.silent = true
            try await withTestStack(calendar: silent) { stack in
                try await register(stack, Self.calendarFlow(timeout: 1))
                try stack.publishCommand(id: "cal-silent", intent: "calendar.reschedule")
                let run = try #require(try await stack.waitForRuns(1, status: .failed, timeout: .seconds(30)).first)
                let attempts = run.step("create")?.attempts ?? []
                #expect(attempts.count == 2)
                #expect(attempts.allSatisfy { $0.error?.kind == .timeout })
                #expect(run.step("move")?.attempts.isEmpty == true)
            }
        }

        @Test func aCreateFailedThatIsNotRetryableFailsTheStepAtOnceAndCompensates() async throws {
            var settings = CalendarSimulator.Settings()
            settings.permanentFailures = true
            settings.failWhen = { $0["title"]?.stringValue?.hasPrefix("refused") == true }
            try await withTestStack(calendar: settings) { stack in
                try await register(
                    stack,
                    [
                        "id": "two-events", "trigger": ["event": "AssistantCommandIssued", "intent": "two.events"],
                        "defaults": [
                            "retry": ["max_attempts": 3, "initial_ms": 50, "max_ms": 100], "timeout_sec": 30,
                        ],
                        "steps": [
                            [
                                "id": "first", "action": "calendar.schedule_event",
                                "with": [
                                    "title": "kept {{trigger.entities.title}}", "start": "{{trigger.entities.start}}",
                                ],
                                "compensate": [
                                    "action": "calendar.cancel_event",
                                    "with": ["event_id": "{{steps.first.output.event_id}}"],
                                ],
                            ],
                            [
                                "id": "second", "action": "calendar.schedule_event", "depends_on": ["first"],
                                "with": [
                                    "title": "refused {{trigger.entities.title}}",
                                    "start": "{{trigger.entities.start}}",
                                ],
                            ],
                        ],
                        "output": ["text": "both"],
                    ])
                try stack.publishCommand(id: "two-1", intent: "two.events")
                let run = try #require(try await stack.waitForRuns(1, status: .failed).first)
                let attempts = run.step("second")?.attempts ?? []
                #expect(attempts.count == 1, "a non-retryable CreateFailed is not retried")
                #expect(attempts.first?.error?.kind == .calendarCreateFailed)
                #expect(attempts.first?.error?.retryable == false)
                #expect(run.step("first")?.status == .compensated)
                let cancels = try await stack.log().filter { $0.subject == Subjects.calendarCancel }
                #expect(cancels.count == 1)
                #expect(cancels.first?.event?.data["event_id"] == run.step("first")?.output?["event_id"])
            }
        }

        static let searchFlow: JSONValue = [
            "id": "search-twice", "trigger": ["event": "AssistantCommandIssued", "intent": "search.twice"],
            "steps": [
                ["id": "first", "action": "discovery.search", "with": ["query": "  Budget   REVIEW ", "top_n": 3]],
                [
                    "id": "again", "action": "discovery.search", "depends_on": ["first"],
                    "with": ["query": "budget review", "top_n": 2],
                ],
                [
                    "id": "more", "action": "discovery.search", "depends_on": ["again"],
                    "with": ["query": "budget review", "top_n": 5],
                ],
                [
                    "id": "bad", "action": "discovery.search", "depends_on": ["more"],
                    "with": ["query": "x", "top_n": 1000], "retry": ["max_attempts": 1],
                ],
            ],
            "output": ["text": "done"],
        ]

        @Test func discoveryAnswersTheSameNormalisedQueryFromItsCacheAndSaysSo() async throws {
            try await withTestStack { stack in
                try await register(stack, Self.searchFlow)
                try stack.publishCommand(id: "search-1", intent: "search.twice")
                let run = try #require(try await stack.waitForRuns(1, status: .failed).first)
                let first = try #require(run.step("first")?.output)
                let again = try #require(run.step("again")?.output)
                let more = try #require(run.step("more")?.output)
                #expect(first["cached"] == false)
                #expect(first["results"]?.arrayValue?.count == 3)
                // Case and spaces do not matter; fewer results than cached come from the cache, top N kept.
                #expect(again["cached"] == true)
                #expect(again["results"]?.arrayValue == Array(first["results"]!.arrayValue!.prefix(2)))
                // More results than were cached: asked again.
                #expect(more["cached"] == false)
                #expect(more["results"]?.arrayValue?.count == 5)
                #expect(stack.discovery.requestsServed == 2)
                let error = try #require(run.step("bad")?.attempts.last?.error)
                #expect(error.message.contains("top_n must be a whole number from 1 to 100"), "\(error.message)")

                let (_, text) = try await stack.client.text("GET", "/metrics")
                let page = PrometheusText(text)
                #expect(page.value("ledgerflow_discovery_cache_total{result=\"hit\"}") == 1)
                #expect(page.value("ledgerflow_discovery_cache_total{result=\"miss\"}") == 2)
            }
        }

        @Test func aDisabledCacheAsksTheServiceEveryTime() async throws {
            var configuration = TestStack.loopbackAllowed
            configuration.discoveryCacheTTL = .zero
            try await withTestStack(configuration: configuration) { stack in
                var flow = Self.searchFlow.objectValue!
                flow["steps"] = .array(Array(Self.searchFlow["steps"]!.arrayValue!.prefix(2)))
                try await register(stack, .object(flow))
                try stack.publishCommand(id: "search-2", intent: "search.twice")
                let run = try #require(try await stack.waitForRuns(1).first)
                #expect(run.step("again")?.output?["cached"] == false)
                #expect(stack.discovery.requestsServed == 2)
            }
        }

        @Test func aFailedNotificationIsRecordedOnItsStep() async throws {
            try await withTestStack { stack in
                stack.notifications.update { $0.failureRate = 1 }
                try await register(stack, Self.orderFlow)
                try publish(
                    stack, subject: "events.orders.shipped", type: "OrderShipped", id: "f-1",
                    data: ["order_id": "F-1", "country": "ES"])
                let run = try #require(try await stack.waitForRuns(1).first)
                try await eventually("the failure answer on the step") {
                    guard let step = try stack.store.run(run.run_id)?.step("tell") else { return false }
                    let answer = step.late_results?.first?.output ?? step.output
                    return answer?["status"] == "failed"
                }
            }
        }
    }
}

extension Integration.IntegrationTests {
    /// The outputs published for the assistant (`FlowOutputProduced` on `automation.output.produced`).
    func outputs(_ stack: TestStack) async throws -> [CloudEvent<JSONValue>] {
        try await stack.log().filter { $0.subject == Subjects.outputProduced }.compactMap(\.event)
    }

    /// `examples/flows/search-and-reply.json` end to end: a chat question, a search, a reply in the user's channel.
    @Test func theSearchAndReplyExampleAnswersInTheUsersChannel() async throws {
        try await withTestStack { stack in
            try await register(stack, try Fixtures.flow("search-and-reply"))
            let data: JSONValue = [
                "message_id": "m-search", "intent": "search.find", "entities": ["query": "Parques  en Madrid"],
                "user": ["id": "u-7"], "channel": ["type": "telegram", "conversation_id": "tg-1"],
            ]
            try publish(
                stack, subject: Subjects.assistantCommandIssued, type: EventType.assistantCommandIssued, id: "q-1",
                data: data)
            let run = try #require(try await stack.waitForRuns(1).first)
            #expect(run.step("search")?.output?["cached"] == false)
            #expect(run.step("search")?.output?["results"]?.arrayValue?.count == 3)
            try await eventually("the reply") { try await !outputs(stack).isEmpty }
            let reply = try #require(try await outputs(stack).first)
            #expect(reply.data["message_id"] == "m-search")
            #expect(reply.data["channel"] == ["type": "telegram", "conversation_id": "tg-1"])
            #expect(reply.data["text"] == "Esto es lo que encontré: Parques  en Madrid — result 1")
            #expect(reply.data[path: "data.cached"] == false)
        }
    }

    /// `examples/flows/notify-on-order-shipped.json` end to end: another service's event, a notification, its answer.
    @Test func theOrderShippedExampleNotifiesTheCustomer() async throws {
        try await withTestStack { stack in
            try await register(stack, try Fixtures.flow("notify-on-order-shipped"))
            try publish(
                stack, subject: "events.orders.shipped", type: "OrderShipped", id: "ship-1",
                data: ["order_id": "A-1", "customer_id": "c-42", "country": "ES"])
            let run = try #require(try await stack.waitForRuns(1).first)
            #expect(run.output?["text"] == "Avisado c-42 del pedido A-1")
            let request = try #require(
                try await stack.log().first { $0.subject == Subjects.notificationSend }?.event)
            #expect(request.type == EventType.notificationRequested)
            #expect(request.data["message"] == "Tu pedido A-1 está en camino.")
            #expect(request.data["idempotency_key"] != nil)
            try await eventually("the service's answer") {
                try await stack.log().contains { $0.subject == Subjects.notificationSent }
            }
            #expect(stack.notifications.notificationsSent == 1)
        }
    }
}

extension Integration.IntegrationTests {
    /// No service's message settles another's step: a notification answer naming a calendar step's command is
    /// ignored (kept in the log); the calendar's own answer then settles it. A chat command published on the event
    /// subjects is refused there.
    @Test func anAnswerOfTheWrongServiceOrOnTheWrongSubjectChangesNothing() async throws {
        var silent = CalendarSimulator.Settings()
        silent.silent = true
        try await withTestStack(calendar: silent) { stack in
            try await register(stack, Self.calendarFlow(timeout: 60))
            try stack.publishCommand(id: "cross-1", intent: "calendar.reschedule")
            try await eventually("the run waits on the calendar") {
                try stack.runs().contains { $0.step("create")?.status == .running }
            }
            let runID = try #require(try stack.runs().first?.run_id)
            let commandID = "\(runID)/create/1"
            let forged = CloudEvent(
                source: "not-the-notification-service", type: EventType.notificationSent,
                data: ["command_id": .string(commandID), "status": "sent"] as JSONValue)
            try stack.outside.publish(subject: Subjects.notificationSent, payload: try EventCodec().encode(forged))
            try publish(
                stack, subject: "events.chat", type: EventType.assistantCommandIssued, id: "smuggled",
                data: [
                    "message_id": "m", "intent": "calendar.reschedule", "entities": [:], "user": ["id": "u"],
                    "channel": ["type": "chat", "conversation_id": "c"],
                ])
            try await eventually("both consumed") {
                let log = try await stack.log()
                let last = log.last { $0.event?.id == "smuggled" }?.sequence ?? .max
                let refused = try await records(stack, prefix: "ledger.rejected.").count
                return stack.store.progress.position >= last && refused == 1
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(try stack.store.run(runID)?.step("create")?.status == .running)
            #expect(try stack.runs().count == 1)
            let refusal = try #require(try await records(stack, prefix: "ledger.rejected.").first)
            #expect(refusal.data["reason"]?.stringValue?.contains("has a subject of its own") == true)

            let real = CloudEvent(
                source: "calendar", type: EventType.calendarCreated,
                data: ["command_id": .string(commandID), "event_id": "evt-1", "title": "T"] as JSONValue)
            try stack.outside.publish(subject: Subjects.calendarCreated, payload: try EventCodec().encode(real))
            try await eventually("the calendar's answer settles the step") {
                try stack.store.run(runID)?.step("create")?.status == .succeeded
            }
            #expect(try stack.store.run(runID)?.step("create")?.output?["event_id"] == "evt-1")
        }
    }

    /// `emit` may not publish on the engine's event subjects, whichever they are (a flow would trigger itself).
    @Test func emitOntoTheConfiguredEventSubjectsIsRefused() async throws {
        var configuration = TestStack.loopbackAllowed
        configuration.eventSubjects = ["orders.>"]
        try await withTestStack(configuration: configuration) { stack in
            try await register(
                stack,
                [
                    "id": "echo", "trigger": ["event": "AssistantCommandIssued", "intent": "echo"],
                    "steps": [
                        [
                            "id": "loop", "action": "emit", "retry": ["max_attempts": 1],
                            "with": ["subject": "orders.created", "type": "OrderCreated", "data": ["n": 1]],
                        ]
                    ],
                    "output": ["text": "x"],
                ])
            try stack.publishCommand(id: "echo-1", intent: "echo")
            let run = try #require(try await stack.waitForRuns(1, status: .failed).first)
            let error = try #require(run.step("loop")?.attempts.last?.error)
            #expect(error.message.contains("is one the engine consumes (orders.>)"), "\(error.message)")
            #expect(try await stack.log().allSatisfy { $0.subject != "orders.created" })
        }
    }
}

@Suite struct EventSubjectPolicyTests {
    @Test func subjectsThatWouldClashOrCaptureTooMuchAreRefused() {
        #expect(EventSubjectPolicy.problem(["events.>"]) == nil)
        #expect(EventSubjectPolicy.problem(["orders.*.created", "billing.>"]) == nil)
        #expect(EventSubjectPolicy.problem([])?.contains("at least one") == true)
        #expect(EventSubjectPolicy.problem(["ledger.>"])?.contains("overlaps ledger.>") == true)
        #expect(EventSubjectPolicy.problem(["calendar.*.created"])?.contains("overlaps calendar.") == true)
        #expect(EventSubjectPolicy.problem([">"])?.contains("system") == true)
        #expect(EventSubjectPolicy.problem(["$JS.>"])?.contains("system") == true)
        #expect(EventSubjectPolicy.problem(["events.>", "events.orders"])?.contains("overlaps") == true)
        #expect(EventSubjectPolicy.problem(["events..x"])?.contains("not a subject") == true)
        #expect(EventSubjectPolicy.problem(["events.>.x"])?.contains("wildcard") == true)
        #expect(EventSubjectPolicy.problem(["ev*nts.x"])?.contains("wildcard") == true)
        #expect(EventSubjectPolicy.problem(Array(repeating: "a.b", count: 40))?.contains("at most") == true)
        #expect(EventSubjectPolicy.problem([String(repeating: "a", count: 300)])?.contains("longer") == true)
        #expect(EventSubjectPolicy.subjectsOverlap("a.*.c", "a.b.>"))
        #expect(!EventSubjectPolicy.subjectsOverlap("a.b", "a.b.c"))
        #expect(!EventSubjectPolicy.subjectsOverlap("a.x.c", "a.y.>"))
    }

    /// Another service's event is stored once in its run's start: the input refers to the trigger's data.
    @Test func anEventsDataIsNotStoredTwiceInItsRunsStart() {
        let data: JSONValue = ["order_id": "A-1", "lines": .array(Array(repeating: "x", count: 100))]
        let trigger = RunTrigger(kind: .event, event_type: "OrderShipped", event_id: "e", sequence: 1, data: data)
        var input = data.objectValue!
        input["priority"] = "normal"  // a default of the flow's inputs
        let (stored, source) = FlowRunStarted.input(.object(input), over: trigger)
        #expect(source == FlowRunStarted.inputFromTriggerData)
        #expect(stored == ["priority": "normal"])
        var started = FlowRunStarted(
            run_id: "r", flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live, trigger: trigger, actor: "a",
            input: stored, step_ids: [], dedup_key: nil, message_id: nil, channel: nil)
        started.input_source = source
        #expect(started.effectiveInput == .object(input))
        // A chat command's input still refers to its entities.
        let chat = RunTrigger(
            kind: .event, event_type: "AssistantCommandIssued", event_id: "c", sequence: 2,
            data: ["entities": ["title": "T"], "message_id": "m"])
        #expect(FlowRunStarted.input(["title": "T"], over: chat).source == FlowRunStarted.inputFromTriggerEntities)
    }

    @Test func discoveryQueriesAreNormalisedAndBounded() {
        #expect(DiscoveryQuery.normalise("  Budget \t  REVIEW\n") == "budget review")
        guard case .success(let query) = DiscoveryQuery.read(["query": " A  b ", "top_n": 7]) else {
            Issue.record("refused a good query")
            return
        }
        #expect(query == DiscoveryQuery(key: "a b", topN: 7))
        // The step's other fields are part of the key: searches differing in them never share answers.
        guard case .success(let spanish) = DiscoveryQuery.read(["query": "A b", "lang": "es"]),
            case .success(let english) = DiscoveryQuery.read(["query": "a  B", "lang": "en"])
        else {
            Issue.record("refused a query with extra fields")
            return
        }
        #expect(spanish.key != english.key)
        #expect(spanish.key.hasPrefix("a b"))
        for bad: JSONValue in [
            ["query": "   "], ["query": 5], [:], ["query": "x", "top_n": 0], ["query": "x", "top_n": 2.5],
            ["query": "x", "top_n": "3"], ["query": .string(String(repeating: "q", count: 2000))],
        ] {
            guard case .failure(let error) = DiscoveryQuery.read(bad) else {
                Issue.record("accepted \(bad.compactJSON)")
                continue
            }
            #expect(error.kind == .badRequest)
            #expect(!error.retryable)
        }
    }
}
