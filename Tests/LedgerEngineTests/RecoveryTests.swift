import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

/// The answer of work run in a task of its own, once it has one.
final class AnswerBox<T: Sendable>: Sendable {
    let answer = Mutex<Result<T, any Error>?>(nil)
}

extension Integration {
    /// Recovery from what can stop in the middle (issue 16, section 2).
    @Suite struct RecoveryTests {
        static let input: JSONValue = ["title": "Recovered", "start": "2026-11-24T10:00:00Z"]

        /// Runs `work` in a task of its own and waits for its answer until `timeout`: an answer that never comes
        /// fails the test (the task is left behind) instead of hanging it.
        func answer<T: Sendable>(
            _ what: String, within timeout: Duration = .seconds(30),
            _ work: @escaping @Sendable () async throws -> T
        ) async throws -> Result<T, any Error> {
            let box = AnswerBox<T>()
            Task {
                let result: Result<T, any Error>
                do { result = .success(try await work()) } catch { result = .failure(error) }
                box.answer.withLock { $0 = result }
            }
            try await eventually(what, timeout: timeout) { box.answer.withLock { $0 != nil } }
            return try #require(box.answer.withLock { $0 })
        }

        /// The types of the events on a run's subject, in order.
        func eventTypes(_ stack: TestStack, _ runID: String) async throws -> [String] {
            try await stack.ledger.read(subject: Subjects.run(runID)).map {
                try JSONTree.decode(LedgerEvent.self, from: $0.payload).type
            }
        }

        /// The log sequence of the command published with `id`, once the log holds it.
        func commandSequence(_ stack: TestStack, id: String) async throws -> UInt64 {
            var sequence: UInt64?
            try await eventually("command \(id) is in the log") {
                sequence = try await stack.ledger.read(subject: Subjects.assistantCommandIssued)
                    .first { $0.messageID == id }?.sequence
                return sequence != nil
            }
            return try #require(sequence)
        }

        /// Makes the first try of every run's first event land but lose its acknowledgement (`hold`: how long the
        /// lost acknowledgement keeps the retry back).
        func loseFirstStartAcknowledgement(_ stack: TestStack, hold: TimeInterval = 0) -> AnswerBox<Int> {
            let lost = AnswerBox<Int>()
            stack.ledger.failpoints.afterAppend = { message in
                guard message.subject.hasPrefix(Subjects.runPrefix), message.expectedLastSubjectSequence == 0,
                    lost.answer.withLock({ answer in
                        defer { answer = .success(1) }
                        return answer == nil
                    })
                else { return }
                if hold > 0 { Thread.sleep(forTimeInterval: hold) }
                throw NATSError(status: 7, message: "injected: the acknowledgement was lost")
            }
            return lost
        }

        func expectStartedAndDriven(_ stack: TestStack, _ outcome: RunStart) async throws {
            guard case .started(let runID, let sequence) = outcome else {
                Issue.record("the start was answered \(outcome), not .started")
                return
            }
            let first = try #require(try await stack.ledger.firstMessage(on: Subjects.run(runID)))
            #expect(first.sequence == sequence)
            #expect(stack.engine.runsStarted.load(ordering: .relaxed) == 1)
            let run = try #require(try await stack.waitForRuns(1).first)
            #expect(run.run_id == runID)
            #expect(try await eventTypes(stack, runID).filter { $0 == EventType.runStarted }.count == 1)
        }

        @Test func aStartWhoseRetryIsAcknowledgedAsADuplicateIsReportedStartedAndDriven() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let lost = loseFirstStartAcknowledgement(stack)
                defer { stack.ledger.failpoints.afterAppend = nil }
                let outcome = try await answer("the start is answered") {
                    try await stack.engine.requestRun(
                        flowID: "calendar-create-event", input: Self.input, mode: .live, idempotencyKey: "dup-ack",
                        actor: "user:tester")
                }.get()
                #expect(lost.answer.withLock { $0 != nil })
                try await expectStartedAndDriven(stack, outcome)
            }
        }

        @Test func aStartWhoseRetryFindsItsOwnEventOnTheSubjectIsReportedStartedAndDriven() async throws {
            try await withTestStack { stack in
                // The retry comes after the duplicate window: the log does not recognise it, and refuses it
                // because the run's subject is no longer empty.
                var config = try await stack.ledger.api.streamInfo(stack.ledger.stream).config
                config.duplicate_window = 1_000_000_000
                try await stack.ledger.api.createOrUpdateStream(config)
                try await stack.activateExample()
                let lost = loseFirstStartAcknowledgement(stack, hold: 2.5)
                defer { stack.ledger.failpoints.afterAppend = nil }
                let outcome = try await answer("the start is answered") {
                    try await stack.engine.requestRun(
                        flowID: "calendar-create-event", input: Self.input, mode: .live, idempotencyKey: "late-retry",
                        actor: "user:tester")
                }.get()
                #expect(lost.answer.withLock { $0 != nil })
                try await expectStartedAndDriven(stack, outcome)
            }
        }

        /// A flow whose one step fails at once (a closed port, one attempt): its runs end FAILED and can be redriven.
        static func failingFlow(port: Int) -> JSONValue {
            [
                "id": "fails-fast", "trigger": ["event": "AssistantCommandIssued", "intent": "fails.fast"],
                "steps": [
                    [
                        "id": "call", "action": "http.request",
                        "with": ["method": "GET", "url": .string("http://127.0.0.1:\(port)/")],
                        "retry": ["max_attempts": 1],
                    ]
                ],
                "output": ["text": "never"],
            ]
        }

        @Test func cancelsAndRedrivesRacingTheRunsEndAreAllAnswered() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                let closed = LocalNATSServer.freePort()
                #expect(try await stack.http("POST", "/automation/flows", Self.failingFlow(port: closed)).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/fails-fast/activate").0 == 200)
                let engine = stack.engine
                let rounds = 24
                // Each run is raced by a cancel (and a failing one by a redrive too), sent a little later each
                // round, so that some arrive before the run ends, some while it ends and some after.
                let answers = try await withThrowingTaskGroup(
                    of: (String, String, Result<Void, any Error>).self
                ) { group in
                    for round in 0..<rounds {
                        let fails = round % 2 == 1
                        let start = try await engine.requestRun(
                            flowID: fails ? "fails-fast" : "calendar-create-event", input: fails ? [:] : Self.input,
                            mode: .live, idempotencyKey: "race-\(round)", actor: "user:tester")
                        let runID = start.runID
                        let pause = Duration.milliseconds(3 * (round / 2))
                        group.addTask {
                            try await Task.sleep(for: pause)
                            let cancelled = try await answer("the cancel of run \(runID) is answered") {
                                try await engine.cancelRun(runID, actor: "racer", reason: "racing its end")
                            }
                            return (runID, "cancel", cancelled)
                        }
                        if fails {
                            group.addTask {
                                try await Task.sleep(for: pause)
                                let redriven = try await answer("the redrive of run \(runID) is answered") {
                                    try await engine.redriveRun(runID, fromStep: nil, actor: "racer")
                                }
                                return (runID, "redrive", redriven)
                            }
                        }
                    }
                    var answers: [(String, String, Result<Void, any Error>)] = []
                    for try await answer in group { answers.append(answer) }
                    return answers
                }
                #expect(answers.count == rounds + rounds / 2)
                for (runID, command, answer) in answers {
                    if case .failure(let error) = answer {
                        // Refused, saying why: never an error of another kind.
                        guard case EngineError.invalidState(let reason)? = error as? EngineError else {
                            Issue.record("\(command) of \(runID) failed with \(error)")
                            continue
                        }
                        #expect(!reason.isEmpty)
                    }
                }
                // Every run ends, and a cancel that was accepted ended its run CANCELLED.
                try await eventually("every run has finished", timeout: .seconds(60)) {
                    let runs = try stack.runs()
                    return runs.count == rounds && runs.allSatisfy { $0.status.isTerminal }
                }
                for (runID, command, answer) in answers where command == "cancel" {
                    guard case .success = answer else { continue }
                    #expect(try stack.store.run(runID)?.status == .cancelled, "run \(runID) was cancelled")
                }
            }
        }

        @Test func anEffectArrivingAfterItsStepWasAbandonedIsRecordedAndUndoneOnce() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .seconds(2)
            try await withTestStack(calendar: settings) { stack in
                try await stack.activateExample()
                let runID = try await stack.engine.requestRun(
                    flowID: "calendar-create-event", input: Self.input, mode: .live, idempotencyKey: "late-effect",
                    actor: "user:tester"
                ).runID
                try await eventually("the calendar step is running") {
                    try stack.store.run(runID)?.step("create")?.status == .running
                }
                _ = try await answer("the cancel is answered") {
                    try await stack.engine.cancelRun(runID, actor: "ops", reason: "changed plans")
                }.get()
                _ = try await stack.waitForRuns(1, status: .cancelled)
                // The calendar created the event after all: its answer is recorded, and the event cancelled.
                try await eventually("the late effect is undone", timeout: .seconds(30)) {
                    try stack.store.run(runID)?.step("create")?.compensation?.status == .succeeded
                }
                let run = try #require(try stack.store.run(runID))
                #expect(run.status == .cancelled)
                let step = try #require(run.step("create"))
                #expect(step.status == .compensated)
                let eventID = try #require(step.output?["event_id"]?.stringValue)
                let types = try await eventTypes(stack, runID)
                #expect(types.filter { $0 == "StepLateResultRecorded" }.count == 1)
                #expect(types.filter { $0 == EventType.compensationStarted }.count == 1)
                #expect(types.last == EventType.compensationSucceeded)
                let cancels = try await stack.ledger.read(subject: Subjects.calendarCancel)
                #expect(cancels.count == 1)
                let cancel = String(decoding: cancels.first?.payload ?? [], as: UTF8.self)
                #expect(cancel.contains(eventID))
                // The run is left alone afterwards, and its model equals a rebuild from the log.
                #expect(stack.engine.activeRunCount == 0)
                let end = try await stack.ledger.lastSequence()
                try await eventually("the models reach the end") { stack.store.progress.position >= end }
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func aFlowActivatedAfterAMessageNeverFiresForItWhenTheConsumerIsRecreated() async throws {
            try await withTestStack { stack in
                // A command no flow answers yet, handled by the engine's consumer.
                try stack.publishCommand(id: "before-the-flow", title: "Too early")
                // The command's own sequence, not the stream's last: the engine records the command it could not
                // take (`InboundEventUnhandled`) on a subject its filtered consumer never sees, so the last sequence
                // can lie past anything that consumer will acknowledge.
                let early = try await commandSequence(stack, id: "before-the-flow")
                try await eventually("the engine has handled the early command") {
                    let info = try await stack.ledger.api.consumerInfo(
                        stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                    return info.ack_floor.stream_seq >= early
                }
                try await stack.activateExample()
                // The engine's consumer is recreated: every message is delivered again from the start.
                await stack.stopEngine()
                try await stack.ledger.api.deleteConsumer(
                    stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                stack.restartEngine()
                try stack.publishCommand(id: "after-the-flow", title: "In time")
                let late = try await commandSequence(stack, id: "after-the-flow")
                _ = try await stack.waitForRuns(1)
                try await eventually("the new consumer has handled both commands") {
                    let info = try await stack.ledger.api.consumerInfo(
                        stream: stack.ledger.stream, consumer: stack.configuration.consumerName)
                    return info.ack_floor.stream_seq >= late
                }
                let end = try await stack.ledger.lastSequence()
                try await eventually("the models reach the end") { stack.store.progress.position >= end }
                let runs = try stack.runs()
                #expect(runs.count == 1)
                #expect(runs.first?.input["title"] == "In time")
            }
        }

        @Test func aRedriveOfARunThatJustFailedIsDecidedOnTheLogNotOnAReadModelBehindIt() async throws {
            try await withTestStack { stack in
                let closed = LocalNATSServer.freePort()
                #expect(try await stack.http("POST", "/automation/flows", Self.failingFlow(port: closed)).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/fails-fast/activate").0 == 200)
                let runID = try await stack.engine.requestRun(
                    flowID: "fails-fast", input: [:], mode: .live, idempotencyKey: "stale", actor: "user:tester"
                ).runID
                _ = try await stack.waitForRuns(1, status: .failed)
                // Another process whose read models have the run only up to its attempt in flight (they lag
                // behind the log): the run finished meanwhile, and that process does not drive it.
                var events: [(sequence: UInt64, event: LedgerEvent)] = []
                for message in try await stack.ledger.read(subject: nil) {
                    guard
                        case .event(let event) = LogAdmission.admit(
                            subject: message.subject, payload: message.payload, messageID: message.messageID)
                    else { continue }
                    if case .stepAttemptFailed = event.body { break }
                    events.append((message.sequence, event))
                }
                let directory = TemporaryDirectory()
                let behind = try ReadModelStore(path: directory.path, mapSize: 1 << 26)
                try await behind.apply(events, through: try #require(events.last?.sequence))
                #expect(try behind.run(runID)?.status == .running)
                let other = Engine(
                    ledger: stack.ledger, store: behind, configuration: stack.configuration, logger: testLogger)
                let redriven = try await answer("the redrive is answered") {
                    try await other.redriveRun(runID, fromStep: nil, actor: "ops")
                }
                if case .failure(let error) = redriven { Issue.record("the redrive was refused: \(error)") }
                try await eventually("the redriven run fails again") {
                    try await eventTypes(stack, runID).filter { $0 == EventType.runFailed }.count == 2
                }
                let types = try await eventTypes(stack, runID)
                #expect(types.filter { $0 == EventType.runRedriven }.count == 1)
                // One attempt before the redrive, one after it.
                #expect(types.filter { $0 == EventType.stepAttemptStarted }.count == 2)
                try await eventually("the other process has let the run go") { other.activeRunCount == 0 }
                await other.executor.shutdown()
            }
        }
    }
}
