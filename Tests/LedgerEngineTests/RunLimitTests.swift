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

        @Test func triggersWaitInTheStreamAtTheLimitWhileAnswersReachTheRuns() async throws {
            var slow = CalendarSimulator.Settings()
            slow.latency = .seconds(1)
            try await withTestStack(calendar: slow, configuration: Self.limited(3)) { stack in
                try await stack.activateExample()
                for index in 0..<12 { try stack.publishCommand(id: "limited-\(index)", title: "Meeting \(index)") }
                // Three runs wait on the calendar; the nine other commands wait in the stream, undelivered.
                try await eventually("three runs started, nine commands waiting in the stream") {
                    let info = try await stack.ledger.api.consumerInfo(
                        stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
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
                #expect(answers.delivered.consumer_seq == 12)
            }
        }

        /// A log an earlier version consumed with one consumer for commands and answers: the answers' consumer starts
        /// where that one had acknowledged, so an answer it left unread reaches its run and none it had handled
        /// comes again; the old consumer keeps its place and reads triggers only from then on.
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
                func answer(_ command: LogMessage) throws -> String {
                    let sent = try EventCodec().decode(CloudEvent<JSONValue>.self, from: command.payload)
                    let commandID = try #require(sent.data["command_id"]?.stringValue)
                    let event = CloudEvent(
                        source: "calendar", type: EventType.calendarCreated,
                        data: [
                            "command_id": .string(commandID), "event_id": .string("evt-\(commandID.prefix(8))"),
                            "title": sent.data["title"] ?? .null,
                        ] as JSONValue)
                    try stack.outside.publish(
                        subject: Subjects.calendarCreated, payload: try EventCodec().encode(event))
                    return commandID
                }
                let first = try answer(commands[0])
                _ = try await stack.waitForRuns(1)
                // The earlier version: one consumer, every inbound subject, everything so far acknowledged.
                await stack.stopEngine()
                for name in [stack.configuration.consumerName, stack.configuration.answersConsumerName] {
                    try await stack.ledger.api.deleteConsumer(stream: stack.ledger.stream, consumer: name)
                }
                var old = ConsumerConfig()
                old.durable_name = stack.configuration.consumerName
                old.filter_subjects = stack.configuration.inboundSubjects
                old.deliver_policy = "by_start_sequence"
                old.opt_start_seq = try await stack.ledger.lastSequence() + 1
                old.max_deliver = stack.configuration.maxDeliveries + 1
                try await stack.ledger.ensureDurableConsumer(old)
                let second = try answer(commands[1])
                #expect(first != second)
                stack.restartEngine()
                let runs = try await stack.waitForRuns(2)
                #expect(runs.count == 2)
                let answers = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.answersConsumerName)
                #expect(answers.config.deliver_policy == "by_start_sequence")
                #expect(answers.config.opt_start_seq == old.opt_start_seq)
                #expect(answers.delivered.consumer_seq == 1, "only the answer the old consumer left unread")
                let triggers = try await stack.ledger.api.consumerInfo(
                    stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                #expect(triggers.config.filter_subjects == stack.configuration.triggerSubjects)
                // A command after the change starts its run through the same (narrowed) consumer.
                try stack.publishCommand(id: "after-the-change", title: "Later")
                try await eventually("the third run sent its calendar command") {
                    try await stack.ledger.read(subject: Subjects.calendarCommands).count == 3
                }
                _ = try answer(try #require(try await stack.ledger.read(subject: Subjects.calendarCommands).last))
                #expect(try await stack.waitForRuns(3).count == 3)
            }
        }
    }
}
