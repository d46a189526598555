import Foundation
import HTTPTypes
import Hummingbird
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import LedgerCore
@testable import LedgerEngine

/// An HTTP target that counts the calls it receives by `Idempotency-Key`: `/effect` answers at once, `/slow` only
/// once its gate is open (or after a minute).
final class EffectTarget: Sendable {
    let port = LocalNATSServer.freePort()
    /// Calls received, by idempotency key (keys of both paths).
    let calls = Mutex<[String: Int]>([:])
    let gate = Atomic<Bool>(false)
    private let running = Mutex<(ServiceGroup, Task<Void, any Error>)?>(nil)

    var base: String { "http://127.0.0.1:\(port)" }
    var total: Int { calls.withLock { $0.values.reduce(0, +) } }
    var keys: [String: Int] { calls.withLock { $0 } }

    func start() async throws {
        let router = Router()
        let record: @Sendable (Request) -> Void = { request in
            let key = request.headers[HTTPField.Name("Idempotency-Key")!] ?? "none"
            self.calls.withLock { $0[key, default: 0] += 1 }
        }
        router.post("/effect") { request, _ -> Response in
            record(request)
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"done\":true}")))
        }
        router.post("/slow") { request, _ -> Response in
            record(request)
            let deadline = ContinuousClock.now + .seconds(60)
            while !self.gate.load(ordering: .acquiring), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"slow\":true}")))
        }
        router.get("/ping") { _, _ in "pong" }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: testLogger)
        running.withLock { $0 = TestStack.run([app]) }
        let client = TestHTTPClient(base: base, timeout: 2)
        try await eventually("the effect target answers") { await client.status("/ping") == 200 }
    }

    func stop() async {
        gate.store(true, ordering: .releasing)
        guard let (group, task) = running.withLock({ $0.take() }) else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

extension Integration {
    /// Several workers share one log: exactly one drives each run, a worker that stops is taken over, and no effect
    /// is sent twice (issue 16).
    @Suite struct WorkerTests {
        /// One `http.request` step to `path`, started by hand.
        static func callFlow(_ id: String, _ url: String) -> JSONValue {
            [
                "id": .string(id), "trigger": ["manual": true],
                "steps": [
                    ["id": "call", "action": "http.request", "with": ["method": "POST", "url": .string(url)]]
                ],
                "output": ["text": "called"],
                "defaults": ["retry": ["max_attempts": 1], "timeout_sec": 120],
            ]
        }

        func startRun(_ stack: TestStack, _ flow: JSONValue) async throws -> String {
            let id = try #require(flow["id"]?.stringValue)
            let (created, body) = try await stack.http("POST", "/automation/flows", flow)
            try #require(created == 201, "\(body.compactJSON)")
            try #require(try await stack.http("POST", "/automation/flows/\(id)/activate").0 == 200)
            let (accepted, answer) = try await stack.http("POST", "/automation/flows/\(id)/run", ["input": [:]])
            try #require(accepted == 202, "\(answer.compactJSON)")
            return try #require(answer["run_id"]?.stringValue)
        }

        /// The run's events in the log, decoded.
        func events(_ stack: TestStack, _ runID: String) async throws -> [LedgerEvent] {
            try await stack.ledger.read(subject: Subjects.run(runID)).map {
                try JSONDecoder().decode(LedgerEvent.self, from: Data($0.payload))
            }
        }

        func claims(_ events: [LedgerEvent]) -> [RunClaimed] {
            events.compactMap { if case .runClaimed(let claim) = $0.body { claim } else { nil } }
        }

        /// The issue's reproduction: a worker that starts (or restarts) while another live worker waits on a slow
        /// call never sends that call again.
        @Test func aJoiningWorkerLeavesTheRunsOfALiveWorkerAlone() async throws {
            try await withTestStack { stack in
                let target = EffectTarget()
                try await target.start()
                defer { Task { await target.stop() } }
                let runID = try await startRun(stack, Self.callFlow("slow-call", "\(target.base)/slow"))
                try await eventually("the first worker calls the slow target") { target.total == 1 }

                let joined = try await stack.addEngine()
                try await eventually("the joining worker has recovered") { joined.ready.load(ordering: .acquiring) }
                // Long enough for the joining worker's sweeps to judge the first worker's lease several times over.
                try await Task.sleep(for: stack.configuration.leaseTTL * 3)
                #expect(target.total == 1, "the joining worker sent the call again: \(target.keys)")

                target.gate.store(true, ordering: .releasing)
                try await eventually("the run succeeds") { try stack.store.run(runID)?.status == .succeeded }
                #expect(target.total == 1)
                let events = try await events(stack, runID)
                #expect(claims(events).isEmpty, "a live worker's run was claimed")
                #expect(try stack.store.run(runID)?.worker == stack.engine.workerID)
            }
        }

        /// A worker that stops is taken over within a bounded time by a worker that was already running (recovery is
        /// not one-shot): the claim is in the log, and the attempt in flight is sent again once, with its key.
        @Test func aStoppedWorkersRunIsClaimedAndItsAttemptSentAgainOnceWithTheSameKey() async throws {
            try await withTestStack { stack in
                let target = EffectTarget()
                try await target.start()
                defer { Task { await target.stop() } }
                let other = try await stack.addEngine()
                try await eventually("the other worker is ready") { other.ready.load(ordering: .acquiring) }
                let first = stack.engine.workerID
                let runID = try await startRun(stack, Self.callFlow("taken-over", "\(target.base)/slow"))
                try await eventually("the first worker calls the slow target") { target.total == 1 }

                await stack.stopEngine()
                try await eventually("the other worker takes the run over and calls again", timeout: .seconds(30)) {
                    target.total == 2
                }
                target.gate.store(true, ordering: .releasing)
                try await eventually("the run succeeds", timeout: .seconds(30)) {
                    try stack.store.run(runID)?.status == .succeeded
                }
                #expect(target.keys == ["\(runID)/call": 2], "the same attempt, with the same key, sent twice in all")
                let events = try await events(stack, runID)
                let claims = claims(events)
                #expect(claims.count == 1)
                #expect(claims.first?.worker == other.workerID)
                #expect(claims.first?.previous_worker == first)
                #expect(claims.first?.in_flight == ["call"])
                let starts = events.filter { if case .stepAttemptStarted = $0.body { true } else { false } }
                #expect(starts.count == 1, "the attempt is sent again, not started again")
                #expect(other.runsClaimed.load(ordering: .relaxed) == 1)
                #expect(try stack.store.run(runID)?.worker == other.workerID)
                // The chain runs whole through the claim and the other worker's appends.
                let verified = try await stack.ledger.verify()
                #expect(verified.isClean && verified.unchained == 0, "\(verified.problems.map(\.detail))")
            }
        }

        /// A worker started again under the same `--worker-id` (a supervisor restarting it after a crash) resumes
        /// the runs it drove before: no other worker claims them, since the id beats again. Found by tools/chaos:
        /// such runs stayed RUNNING for ever.
        @Test func aWorkerRestartedUnderTheSameIDResumesItsRuns() async throws {
            var configuration = TestStack.loopbackAllowed
            configuration.workerID = "fixed-worker"
            try await withTestStack(configuration: configuration) { stack in
                let target = EffectTarget()
                try await target.start()
                defer { Task { await target.stop() } }
                let runID = try await startRun(stack, Self.callFlow("same-id", "\(target.base)/slow"))
                try await eventually("the worker calls the slow target") { target.total == 1 }

                await stack.stopEngine()
                stack.restartEngine()
                #expect(stack.engine.workerID == "fixed-worker")
                try await eventually("the restarted worker sends the call in flight again", timeout: .seconds(30)) {
                    target.total == 2
                }
                target.gate.store(true, ordering: .releasing)
                try await eventually("the run succeeds", timeout: .seconds(30)) {
                    try stack.store.run(runID)?.status == .succeeded
                }
                #expect(target.keys == ["\(runID)/call": 2], "the same attempt, with the same key, sent again once")
                let events = try await events(stack, runID)
                let starts = events.filter { if case .stepAttemptStarted = $0.body { true } else { false } }
                #expect(starts.count == 1, "the attempt is sent again, not started again")
                #expect(claims(events).map(\.worker) == ["fixed-worker"])
            }
        }

        /// Workers share runs that cross them (a run started on one may get its calendar answer on another): every
        /// run ends once, no step is started twice, and each effect reaches its target once.
        @Test(arguments: [2, 3, 5])
        func workersShareRunsWithNoStepStartedTwiceAndNoEffectSentTwice(workers: Int) async throws {
            try await withTestStack { stack in
                let target = EffectTarget()
                try await target.start()
                defer { Task { await target.stop() } }
                var engines = [stack.engine]
                for _ in 1..<workers { engines.append(try await stack.addEngine()) }
                for engine in engines {
                    try await eventually("every worker is ready") { engine.ready.load(ordering: .acquiring) }
                }
                var flow = TestStack.example.objectValue!
                guard case .array(var steps)? = flow["steps"] else { Issue.record("the example has no steps"); return }
                steps.insert(
                    [
                        "id": "notify-target", "action": "http.request",
                        "with": ["method": "POST", "url": .string("\(target.base)/effect")],
                    ], at: 0)
                var create = steps[1].objectValue!
                create["depends_on"] = ["notify-target"]
                steps[1] = .object(create)
                flow["steps"] = .array(steps)
                let (created, body) = try await stack.http("POST", "/automation/flows", .object(flow))
                try #require(created == 201, "\(body.compactJSON)")
                try #require(try await stack.http("POST", "/automation/flows/calendar-create-event/activate").0 == 200)

                let runs = 60
                for i in 0..<runs { try stack.publishCommand(id: "w\(workers)-\(i)") }
                _ = try await stack.waitForRuns(runs, timeout: .seconds(120))

                let started = engines.map { $0.runsStarted.load(ordering: .relaxed) }
                #expect(started.reduce(0, +) == runs)
                #expect(started.filter { $0 > 0 }.count >= 2, "more than one worker started runs: \(started)")
                #expect(stack.calendar.commandsReceived == runs, "one calendar command per run")
                #expect(target.keys.count == runs && target.keys.values.allSatisfy { $0 == 1 }, "\(target.keys)")
                var starts: [String: Int] = [:]
                var claimed = 0
                for message in try await stack.ledger.read(subject: "ledger.run.>") {
                    let event = try JSONDecoder().decode(LedgerEvent.self, from: Data(message.payload))
                    if case .stepAttemptStarted(let e) = event.body {
                        starts["\(event.runid ?? "")/\(e.step_id)/\(e.attempt)", default: 0] += 1
                    }
                    if case .runClaimed = event.body { claimed += 1 }
                }
                #expect(starts.count == runs * 2)
                #expect(starts.values.allSatisfy { $0 == 1 })
                #expect(claimed == 0, "no worker stopped, so no run was claimed")
                // Workers recording into each other's runs (refused, folded again, appended) keep every chain whole.
                let verified = try await stack.ledger.verify()
                #expect(verified.isClean && verified.unchained == 0, "\(verified.problems.map(\.detail))")
            }
        }
    }
}
