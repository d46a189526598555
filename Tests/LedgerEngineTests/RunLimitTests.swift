import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// The limit of runs a worker drives at once: new triggers wait in the stream while services' answers keep
    /// reaching the runs at the limit (they have a consumer of their own).
    @Suite struct RunLimitTests {
        static func limited(_ limit: Int) -> EngineConfiguration {
            var configuration = TestStack.loopbackAllowed
            configuration.maxRunsInFlight = limit
            return configuration
        }

        /// Answers a calendar command of the log as the calendar would (`CalendarEvent.Created`).
        static func answer(_ command: LogMessage, _ stack: TestStack) throws {
            let sent = try EventCodec().decode(CloudEvent<JSONValue>.self, from: command.payload)
            let commandID = try #require(sent.data["command_id"]?.stringValue)
            let event = CloudEvent(
                source: "calendar", type: EventType.calendarCreated,
                data: [
                    "command_id": .string(commandID), "event_id": .string("evt-\(commandID.prefix(8))"),
                    "title": sent.data["title"] ?? .null,
                ] as JSONValue)
            try stack.outside.publish(subject: Subjects.calendarCreated, payload: try EventCodec().encode(event))
        }

        /// A waiting run's driver waits in a task of its own, made after each mail it handled: stopping the engine
        /// ends every one of them, and the runs go on after a restart.
        @Test func stoppingTheEngineEndsTheDriversOfWaitingRuns() async throws {
            var silent = CalendarSimulator.Settings()
            silent.silent = true
            try await withTestStack(calendar: silent) { stack in
                try await stack.activateExample()
                for index in 0..<5 { try stack.publishCommand(id: "waiting-\(index)", title: "Waiting \(index)") }
                try await eventually("five runs wait for the calendar") {
                    try await stack.ledger.read(subject: Subjects.calendarCommands).count == 5
                }
                #expect(stack.engine.activeRunCount == 5)
                #expect(stack.engine.tasks.withLock { $0.count } == 5)
                let stopped = stack.engine
                await stack.stopEngine()
                try await eventually("no driver left") {
                    stopped.activeRunCount == 0 && stopped.tasks.withLock { $0.isEmpty }
                }
                // A driver launched after the drivers were stopped (a sweep or an answer finishing as the engine
                // stops) ends before doing anything, and answers its first mail "not applied".
                let waiting = try #require(try stack.runs().first)
                let definition = try #require(try stopped.pinnedDefinition(of: waiting))
                let reply = Mutex<String?>(nil)
                _ = stopped.launch(
                    state: waiting, definition: definition, resume: true,
                    initial: .command(.cancel(actor: "tester", reason: "late", actorType: "user")) { answer in
                        reply.withLock { $0 = answer }
                    })
                try await eventually("the late driver ended") {
                    reply.withLock { $0 } == RunDriver.stopped && stopped.activeRunCount == 0
                        && stopped.tasks.withLock { $0.isEmpty }
                }
                stack.restartEngine()
                for command in try await stack.ledger.read(subject: Subjects.calendarCommands) {
                    try Self.answer(command, stack)
                }
                #expect(try await stack.waitForRuns(5).count == 5)
            }
        }

        @Test func triggersWaitInTheStreamAtTheLimitWhileAnswersReachTheRuns() async throws {
            var slow = CalendarSimulator.Settings()
            slow.latency = .seconds(1)
            try await withTestStack(calendar: slow, configuration: Self.limited(3)) { stack in
                try await stack.activateExample()
                for index in 0..<12 { try stack.publishCommand(id: "limited-\(index)", title: "Meeting \(index)") }
                // Three runs wait on the calendar; the nine other commands wait in the stream, undelivered.
                try await eventually("three runs started, nine commands waiting in the stream") {
                    guard
                        let info = try? await stack.ledger.api.consumerInfo(
                            stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                    else { return false }
                    return stack.engine.runsStarted.load(ordering: .relaxed) == 3 && info.num_pending == 9
                }
                // The calendar's answers reach those runs through the answers' consumer, and the rest follow.
                let runs = try await stack.waitForRuns(12, timeout: .seconds(90))
                #expect(runs.count == 12)
                #expect(stack.engine.runsInFlightPeak.load(ordering: .relaxed) == 3)
                let metrics = PrometheusText(String(decoding: stack.engine.metrics.render(), as: UTF8.self))
                #expect(metrics.value("ledgerflow_runs_in_flight_limit") == 3)
                #expect((metrics.value("ledgerflow_run_limit_reached_total") ?? 0) >= 1)
                #expect((metrics.value("ledgerflow_run_limit_wait_seconds_total") ?? 0) > 0)
                // Each consumer reads its own subjects.
                let triggers = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                #expect(triggers.config.filter_subjects == stack.configuration.triggerSubjects)
                let answers = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.answersConsumerName)
                #expect(answers.config.filter_subjects == Subjects.engineAnswers)
                #expect(answers.delivered.consumer_seq >= 12)
                #expect(answers.num_pending == 0 && answers.num_ack_pending == 0)
            }
        }

        /// A log an earlier version consumed with one consumer for commands and answers: the answers' consumer starts
        /// after what that one acknowledged in order, so an answer it had delivered but not acknowledged (the old
        /// engine stopped while handling it) reaches its run, and none it had handled comes again; the old consumer
        /// keeps its place and reads triggers only from then on.
        @Test func theAnswersConsumerStartsWhereTheEarlierSingleConsumerStopped() async throws {
            var silent = CalendarSimulator.Settings()
            silent.silent = true
            try await withTestStack(calendar: silent) { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "answered-before", title: "Before")
                try stack.publishCommand(id: "answered-after", title: "After")
                try await eventually("both runs sent their calendar command") {
                    try await stack.ledger.read(subject: Subjects.calendarCommands).count == 2
                }
                let commands = try await stack.ledger.read(subject: Subjects.calendarCommands)
                func answer(_ command: LogMessage) throws { try Self.answer(command, stack) }
                try answer(commands[0])
                _ = try await stack.waitForRuns(1)
                // The earlier version: one consumer of every inbound subject, which has handled (acknowledged)
                // everything so far, then receives the second answer and stops before acknowledging it.
                await stack.stopEngine()
                for name in [stack.configuration.consumerName, stack.configuration.answersConsumerName] {
                    try await stack.ledger.api.deleteConsumer(stream: stack.ledger.stream, consumer: name)
                }
                var old = ConsumerConfig()
                old.durable_name = stack.configuration.consumerName
                old.description = Engine.singleConsumerDescription
                old.filter_subjects = stack.configuration.inboundSubjects
                old.max_deliver = stack.configuration.maxDeliveries + 1
                try await stack.ledger.ensureDurableConsumer(old)
                let earlier = try stack.ledger.pullSubscription(to: stack.configuration.consumerName)
                var handled = 0
                while true {
                    let batch = try await earlier.fetch(batch: 100, maxWait: .milliseconds(300))
                    if batch.isEmpty { break }
                    for message in batch { try earlier.ack(message) }
                    handled += batch.count
                }
                #expect(handled == 3, "two commands and the first answer")
                try answer(commands[1])
                let unacknowledged = try await earlier.fetch(batch: 1, maxWait: .seconds(5))
                #expect(unacknowledged.map(\.subject) == [Subjects.calendarCreated])
                try await eventually("the earlier consumer's acknowledgements have reached the server") {
                    let info = try await stack.ledger.api.consumerInfo(
                        stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                    return info.num_ack_pending == 1 && info.ack_floor.consumer_seq == 3
                }
                let floor = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.consumerName
                ).ack_floor.stream_seq

                stack.restartEngine()
                let runs = try await stack.waitForRuns(2)
                #expect(runs.count == 2)
                let answers = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.answersConsumerName)
                #expect(answers.config.deliver_policy == "by_start_sequence")
                #expect(answers.config.opt_start_seq == floor + 1)
                #expect(answers.delivered.consumer_seq == 1, "only the answer the earlier consumer left unhandled")
                let triggers = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                #expect(triggers.config.filter_subjects == stack.configuration.triggerSubjects)
                #expect(triggers.config.description != Engine.singleConsumerDescription)
                // A command after the change starts its run through the same (narrowed) consumer.
                try stack.publishCommand(id: "after-the-change", title: "Later")
                try await eventually("the third run sent its calendar command") {
                    try await stack.ledger.read(subject: Subjects.calendarCommands).count == 3
                }
                try answer(try #require(try await stack.ledger.read(subject: Subjects.calendarCommands).last))
                #expect(try await stack.waitForRuns(3).count == 3)
                #expect(stack.engine.runsStarted.load(ordering: .relaxed) == 1, "no earlier command started again")

                // Deleted by an operator after the change, the answers' consumer comes back reading every answer
                // (the narrowed consumer's acknowledgements no longer say what was handled); each changes nothing.
                await stack.stopEngine()
                try await stack.ledger.api.deleteConsumer(
                    stream: stack.ledger.stream, consumer: stack.configuration.answersConsumerName)
                stack.restartEngine()
                try await eventually("every answer read again") {
                    guard
                        let info = try? await stack.ledger.api.consumerInfo(
                            stream: stack.ledger.stream, consumer: stack.configuration.answersConsumerName)
                    else { return false }
                    return info.config.deliver_policy == "all" && info.ack_floor.consumer_seq == 3
                }
                #expect(try stack.runs().filter { $0.status == .succeeded }.count == 3)
            }
        }
    }
}
