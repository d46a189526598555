import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Testing

@testable import LedgerEngine

/// A schedule driven by a manual clock: the scheduler decides at the manual time, so a test moves time on by whole
/// intervals and reads what the scheduler recorded in the log. (A `delay` step waits on the wall clock: a run with an
/// hour's delay stays running through the test.)
struct ScheduleHarness {
    let manual = ManualClock()
    let clock: ManualRunClock
    var configuration = TestStack.loopbackAllowed

    init() {
        // The manual time starts at the wall time (activations are stamped with the wall time) and stays there
        // until a test moves it.
        // A whole millisecond and a half, so each manual instant reads as the millisecond the test moved it to.
        let wall = (Date().timeIntervalSince1970 * 1000).rounded(.down)
        clock = ManualRunClock(manual, epoch: Date(timeIntervalSince1970: (wall + 0.5) / 1000))
        configuration.clock = clock
    }

    var nowMillis: Int64 { ScheduleSpec.millis(clock.now) }

    /// Moves the manual clock on to `millis` (never back).
    func advance(to millis: Int64) {
        let now = nowMillis
        if millis > now { manual.advance(by: .milliseconds(millis - now)) }
    }

    /// When the flow was last activated (Unix ms), as the scheduler reads it.
    static func activatedMillis(_ stack: TestStack, _ flowID: String) throws -> Int64 {
        let record = try #require(try stack.store.flow(flowID))
        let at = try #require(record.history.last { $0.change == "activated" }?.at)
        return ScheduleSpec.millis(try #require(Timestamp.parse(at)))
    }

    /// The first multiple of `step` after `millis`.
    static func nextBoundary(after millis: Int64, step: Int64) -> Int64 { (millis / step + 1) * step }

    /// The outcome recorded for one firing (the one event on its subject), nil while there is none.
    static func firing(_ stack: TestStack, _ flowID: String, _ nominal: Int64) async throws -> LoggedEvent? {
        let events = try await events(stack, subject: Subjects.firing(flowID, nominalMillis: nominal))
        #expect(events.count <= 1, "one outcome per firing: \(events.map(\.type))")
        return events.first
    }

    /// Waits for the outcome of one firing.
    static func waitFiring(
        _ stack: TestStack, _ flowID: String, _ nominal: Int64, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> LoggedEvent {
        try await eventually(
            "the firing at \(Timestamp.format(millis: nominal)) is recorded", timeout: .seconds(60),
            sourceLocation: sourceLocation
        ) { try await firing(stack, flowID, nominal) != nil }
        return try #require(try await firing(stack, flowID, nominal), sourceLocation: sourceLocation)
    }

    struct LoggedEvent {
        var sequence: UInt64
        var subject: String
        var type: String
        var runID: String?
        var flowID: String?
        var data: JSONValue
    }

    static func events(_ stack: TestStack, subject: String? = nil) async throws -> [LoggedEvent] {
        try await stack.ledger.read(subject: subject).compactMap { message in
            guard let event = try? JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(message.payload))
            else { return nil }
            return LoggedEvent(
                sequence: message.sequence, subject: message.subject, type: event.type, runID: event.runid,
                flowID: event.flowid, data: event.data)
        }
    }

    /// Every firing outcome of a flow, in log order.
    static func firings(_ stack: TestStack, _ flowID: String) async throws -> [LoggedEvent] {
        try await events(stack).filter { $0.subject.hasPrefix("ledger.firing.\(flowID).") }
    }

    /// The `FlowRunStarted` events of a flow, in log order.
    static func runStarts(_ stack: TestStack, _ flowID: String) async throws -> [LoggedEvent] {
        try await events(stack).filter { $0.type == EventType.runStarted && $0.flowID == flowID }
    }

    static func runID(_ flowID: String, _ nominal: Int64) -> String {
        DerivedID.uuid("\(flowID)/\(ScheduleFiring.dedupKey(nominalMillis: nominal))")
    }

    static func nominal(_ event: LoggedEvent) -> Int64? {
        event.data["nominal_time"]?.stringValue.flatMap(Timestamp.parse).map(ScheduleSpec.millis)
    }

    /// The listing's started and skipped counts of a schedule, then the read models rebuilt from the log equal the
    /// live ones.
    static func expectCounts(
        _ stack: TestStack, _ flowID: String, started: Int, skipped: [String: Int],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let listed = try #require(
            try await Integration.ScheduleTests.schedule(stack, flowID), sourceLocation: sourceLocation)
        #expect(listed["started"] == .number(Double(started)), "\(listed)", sourceLocation: sourceLocation)
        for (skipClass, count) in skipped {
            #expect(
                listed[path: "skipped.\(skipClass)"] == .number(Double(count)), "\(listed)",
                sourceLocation: sourceLocation)
        }
        try await stack.expectRebuildEqualsLive(sourceLocation: sourceLocation)
    }

    static func waitStatus(_ stack: TestStack, _ runID: String, _ status: RunStatus) async throws {
        try await eventually("run \(runID) is \(status.rawValue)", timeout: .seconds(60)) {
            try stack.store.run(runID)?.status == status
        }
    }
}

extension Integration {
    /// The overlap policies, the catch-up window after a real stop, a restart between a firing's record and its
    /// run's start, and jitter, each on a manual clock and checked against the events in the log.
    @Suite struct SchedulePolicyTests {
        static let minute: Int64 = 60_000

        /// An interval of a minute whose one step waits `delay` on the run clock.
        static func flow(_ id: String, overlap: String?, delay: String, extra: [String: JSONValue] = [:]) -> JSONValue {
            var trigger: [String: JSONValue] = ["interval": "1m", "catchup_window": "10m"]
            if let overlap { trigger["overlap"] = .string(overlap) }
            trigger.merge(extra) { $1 }
            return ScheduleTests.flow(
                id, trigger: .object(trigger),
                steps: [["id": "wait", "action": "delay", "with": ["duration": .string(delay)]]])
        }

        /// Activates `definition` and returns the first firing after its activation.
        static func start(_ stack: TestStack, _ definition: JSONValue) async throws -> Int64 {
            try await ScheduleTests.activate(stack, definition)
            let id = try #require(definition["id"]?.stringValue)
            return ScheduleHarness.nextBoundary(
                after: try ScheduleHarness.activatedMillis(stack, id), step: minute)
        }

        @Test func overlapSkipRecordsTheFiringAndStartsNothingBesideTheRunningRun() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let b1 = try await Self.start(stack, Self.flow("ov-skip", overlap: nil, delay: "1h"))
                h.advance(to: b1)
                let first = try await ScheduleHarness.waitFiring(stack, "ov-skip", b1)
                #expect(first.type == EventType.scheduleFiringStarted)
                let r1 = ScheduleHarness.runID("ov-skip", b1)
                try await ScheduleHarness.waitStatus(stack, r1, .running)
                h.advance(to: b1 + Self.minute)
                let second = try await ScheduleHarness.waitFiring(stack, "ov-skip", b1 + Self.minute)
                #expect(second.type == EventType.scheduleFiringSkipped)
                #expect(second.data["class"] == "skip_overlap")
                #expect(second.data["reason"]?.stringValue?.contains(r1) == true, "\(second.data)")
                let starts = try await ScheduleHarness.runStarts(stack, "ov-skip")
                #expect(starts.map(\.runID) == [r1])
                #expect(try stack.store.run(ScheduleHarness.runID("ov-skip", b1 + Self.minute)) == nil)
                try await ScheduleHarness.expectCounts(stack, "ov-skip", started: 1, skipped: ["skip_overlap": 1])
            }
        }

        @Test func overlapAllowAllStartsBesideTheRunningRun() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let b1 = try await Self.start(stack, Self.flow("ov-all", overlap: "allow_all", delay: "1h"))
                for n in 0..<3 {
                    let nominal = b1 + Int64(n) * Self.minute
                    h.advance(to: nominal)
                    let firing = try await ScheduleHarness.waitFiring(stack, "ov-all", nominal)
                    #expect(firing.type == EventType.scheduleFiringStarted)
                    try await ScheduleHarness.waitStatus(stack, ScheduleHarness.runID("ov-all", nominal), .running)
                }
                // Three runs running at once, none skipped.
                let running = try stack.runs().filter { $0.flow_id == "ov-all" && $0.status == .running }
                #expect(running.count == 3)
                let firings = try await ScheduleHarness.firings(stack, "ov-all")
                #expect(firings.allSatisfy { $0.type == EventType.scheduleFiringStarted }, "\(firings.map(\.type))")
                #expect(try await ScheduleHarness.runStarts(stack, "ov-all").count == 3)
                let listed = try #require(try await ScheduleTests.schedule(stack, "ov-all"))
                #expect(listed[path: "policy.overlap"] == "allow_all")
                #expect(listed[path: "skipped.skip_overlap"] == 0)
                #expect(listed["started"] == 3)
            }
        }

        @Test func overlapCancelOtherCancelsTheRunningRunAndStartsTheFiring() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let b1 = try await Self.start(stack, Self.flow("ov-cancel", overlap: "cancel_other", delay: "1h"))
                h.advance(to: b1)
                _ = try await ScheduleHarness.waitFiring(stack, "ov-cancel", b1)
                let r1 = ScheduleHarness.runID("ov-cancel", b1)
                try await ScheduleHarness.waitStatus(stack, r1, .running)
                h.advance(to: b1 + Self.minute)
                let second = try await ScheduleHarness.waitFiring(stack, "ov-cancel", b1 + Self.minute)
                #expect(second.type == EventType.scheduleFiringStarted)
                let r2 = ScheduleHarness.runID("ov-cancel", b1 + Self.minute)
                try await ScheduleHarness.waitStatus(stack, r1, .cancelled)
                try await ScheduleHarness.waitStatus(stack, r2, .running)
                let cancelled = try await ScheduleHarness.events(stack).filter {
                    $0.type == EventType.runCancelled && $0.runID == r1
                }
                #expect(cancelled.count == 1)
                #expect(cancelled.first?.data.compactJSON.contains("scheduler") == true, "\(cancelled)")
                #expect(try await ScheduleHarness.runStarts(stack, "ov-cancel").map(\.runID) == [r1, r2])
                let listed = try #require(try await ScheduleTests.schedule(stack, "ov-cancel"))
                #expect(listed[path: "policy.overlap"] == "cancel_other")
                #expect(listed["last_run_id"] == .string(r2))
                #expect(listed[path: "skipped.skip_overlap"] == 0)
            }
        }

        /// buffer_one: the second firing waits (one `ScheduleFiringBuffered`), the third is skipped because one
        /// already waits, and the waiting one starts when the running run ends. The listing shows every field.
        @Test func overlapBufferOneKeepsOneFiringThatStartsWhenTheRunningRunEnds() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let b1 = try await Self.start(stack, Self.flow("ov-buffer", overlap: "buffer_one", delay: "1h"))
                let (b2, b3) = (b1 + Self.minute, b1 + 2 * Self.minute)
                h.advance(to: b1)
                _ = try await ScheduleHarness.waitFiring(stack, "ov-buffer", b1)
                let r1 = ScheduleHarness.runID("ov-buffer", b1)
                try await ScheduleHarness.waitStatus(stack, r1, .running)
                h.advance(to: b2)
                let buffered = try await ScheduleHarness.waitFiring(stack, "ov-buffer", b2)
                #expect(buffered.type == EventType.scheduleFiringBuffered)
                try await eventually("the listing shows the waiting firing") {
                    try await ScheduleTests.schedule(stack, "ov-buffer")?["buffered"] != nil
                }
                h.advance(to: b3)
                let third = try await ScheduleHarness.waitFiring(stack, "ov-buffer", b3)
                #expect(third.type == EventType.scheduleFiringSkipped)
                #expect(third.data["class"] == "skip_overlap")
                let r2 = ScheduleHarness.runID("ov-buffer", b2)
                #expect(try stack.store.run(r2) == nil, "the buffered firing waits while r1 runs")
                // r1 ends (an operator cancels it; its delay waits on the wall clock) before the next firing.
                h.advance(to: b3 + 10_000)
                #expect(try await stack.http("POST", "/automation/runs/\(r1)/cancel").0 == 202)
                try await ScheduleHarness.waitStatus(stack, r1, .cancelled)
                try await ScheduleHarness.waitStatus(stack, r2, .running)
                let log = try await ScheduleHarness.events(stack)
                let r1Ended = try #require(log.first { $0.runID == r1 && $0.type == EventType.runCancelled })
                let r2Started = try #require(log.first { $0.runID == r2 && $0.type == EventType.runStarted })
                #expect(r2Started.sequence > r1Ended.sequence, "the buffered firing starts when the run ends")
                #expect(r2Started.data[path: "trigger.scheduled_at"] == .string(Timestamp.format(millis: b2)))
                let firings = try await ScheduleHarness.firings(stack, "ov-buffer")
                #expect(firings.filter { $0.type == EventType.scheduleFiringBuffered }.count == 1)
                #expect(firings.count == 3)
                #expect(try await ScheduleHarness.runStarts(stack, "ov-buffer").map(\.runID) == [r1, r2])

                // GET /automation/schedules: next firings, last firing and its run, policy, paused, counts.
                try await eventually("the listing shows the buffered firing started") {
                    try await ScheduleTests.schedule(stack, "ov-buffer")?["last_run_id"] == .string(r2)
                }
                let listed = try #require(try await ScheduleTests.schedule(stack, "ov-buffer"))
                let next = try #require(listed["next_firings"]?.arrayValue).compactMap {
                    $0.stringValue.flatMap(RFC3339.parse).map(ScheduleSpec.millis)
                }
                let now = h.nowMillis
                let first = ScheduleHarness.nextBoundary(after: now, step: Self.minute)
                #expect(next == [first, first + Self.minute, first + 2 * Self.minute], "\(listed)")
                #expect(listed[path: "last_firing.nominal_time"] == .string(Timestamp.format(millis: b3)))
                #expect(listed[path: "last_firing.outcome"] == "skipped")
                #expect(listed[path: "last_firing.class"] == "skip_overlap")
                #expect(listed[path: "policy.overlap"] == "buffer_one")
                #expect(listed[path: "policy.catchup_window"] == "10m")
                #expect(listed[path: "schedule.interval"] == "1m")
                #expect(listed["paused"] == false)
                #expect(listed["flow_status"] == "active")
                #expect(listed["buffered"] == nil)
                #expect(listed["started"] == 2)
                #expect(
                    listed["skipped"]
                        == ["skip_overlap": 1, "missed_catchup_window": 0, "paused": 0, "inactive": 0])
                try await stack.expectRebuildEqualsLive()
            }
        }

        /// The engine stops for six intervals; after the restart the firings within the catch-up window (150 s) run
        /// once each, in order, and the older ones are recorded together as `missed_catchup_window`.
        @Test func catchUpAfterARealStopRunsTheWindowInOrderAndRecordsTheOlderOnesAsMissed() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let b1 = try await Self.start(
                    stack,
                    ScheduleTests.flow(
                        "catchup-stop",
                        trigger: ["interval": "1m", "catchup_window": "150s", "overlap": "allow_all"]))
                h.advance(to: b1)
                _ = try await ScheduleHarness.waitFiring(stack, "catchup-stop", b1)
                try await ScheduleHarness.waitStatus(stack, ScheduleHarness.runID("catchup-stop", b1), .succeeded)
                await stack.stopEngine()
                // Down until b1 + 370 s: b2..b7 are due; b5, b6, b7 are within 150 s, b2..b4 older.
                h.advance(to: b1 + 370_000)
                stack.restartEngine()
                let nominals = (1...6).map { b1 + Int64($0) * Self.minute }
                let (missed, window) = (Array(nominals[0..<3]), Array(nominals[3...]))
                for nominal in window {
                    try await ScheduleHarness.waitStatus(
                        stack, ScheduleHarness.runID("catchup-stop", nominal), .succeeded)
                }
                let collapsed = try await ScheduleHarness.waitFiring(stack, "catchup-stop", missed[0])
                #expect(collapsed.type == EventType.scheduleFiringSkipped)
                #expect(collapsed.data["class"] == "missed_catchup_window")
                #expect(collapsed.data["count"] == 3)
                #expect(collapsed.data["last_nominal_time"] == .string(Timestamp.format(millis: missed[2])))
                for nominal in missed.dropFirst() {
                    #expect(try await ScheduleHarness.firing(stack, "catchup-stop", nominal) == nil)
                }
                let started = try await ScheduleHarness.firings(stack, "catchup-stop").filter {
                    $0.type == EventType.scheduleFiringStarted
                }
                #expect(started.compactMap(ScheduleHarness.nominal) == [b1] + window, "in order, once each")
                let starts = try await ScheduleHarness.runStarts(stack, "catchup-stop")
                #expect(starts.map(\.runID) == ([b1] + window).map { ScheduleHarness.runID("catchup-stop", $0) })
                try await ScheduleHarness.expectCounts(
                    stack, "catchup-stop", started: 4, skipped: ["missed_catchup_window": 3])
            }
        }

        /// A firing recorded as started whose run never started (the process stopped in between): the next
        /// scheduler starts that run, once.
        @Test func aFiringRecordedButNotStartedBeforeARestartStartsOnce() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let b1 = try await Self.start(
                    stack, ScheduleTests.flow("half-fired", trigger: ["interval": "1m", "catchup_window": "10m"]))
                await stack.stopEngine()
                let runID = ScheduleHarness.runID("half-fired", b1)
                let firing = ScheduleFiring(
                    flow_id: "half-fired", nominal_time: Timestamp.format(millis: b1), outcome: .started,
                    run_id: runID, late_ms: 0, worker: "a-process-that-stopped")
                let appended = try await stack.ledger.append(
                    .scheduleFiring(firing), to: .firing(flowID: "half-fired", nominalMillis: b1),
                    expectedLastSequence: 0, id: DerivedID.uuid("firing/half-fired/\(b1)"), retry: .once)
                _ = await stack.store.progress.wait(for: appended.sequence, timeout: .seconds(30))
                #expect(try stack.store.schedule("half-fired")?.unstarted_ms == b1)
                #expect(try stack.store.run(runID) == nil)
                h.advance(to: b1 + 1000)
                stack.restartEngine()
                try await ScheduleHarness.waitStatus(stack, runID, .succeeded)
                // More ticks change nothing: the firing had its outcome, its run started once.
                for _ in 0..<3 { try await stack.engine.scheduleTick() }
                #expect(try await ScheduleHarness.runStarts(stack, "half-fired").map(\.runID) == [runID])
                #expect(try await ScheduleHarness.firings(stack, "half-fired").count == 1)
                #expect(try stack.store.schedule("half-fired")?.unstarted_ms == nil)
                let run = try #require(try stack.store.run(runID))
                #expect(run.trigger.scheduled_at == Timestamp.format(millis: b1))
            }
        }

        /// Jitter: a firing starts at its nominal time plus its jitter, not before; the jitter is a function of the
        /// flow and the nominal time only, so every scheduler computes the same one.
        @Test func jitterDelaysEachFiringByItsOwnDeterministicShare() async throws {
            let h = ScheduleHarness()
            try await withTestStack(configuration: h.configuration) { stack in
                let definition = ScheduleTests.flow(
                    "jittery", trigger: ["interval": "1m", "jitter": "30s", "catchup_window": "10m"])
                let b1 = try await Self.start(stack, definition)
                let trigger = try #require(
                    try JSONDecoder().decode(FlowDefinition.self, from: Data(definition.compactJSON.utf8)).trigger)
                for nominal in [b1, b1 + Self.minute] {
                    let jitter = Engine.jitterMillis(trigger, flowID: "jittery", nominal: nominal)
                    #expect((0..<30_000).contains(jitter))
                    if jitter > 0 {
                        h.advance(to: nominal + jitter - 1)
                        try await stack.engine.scheduleTick()
                        #expect(
                            try await ScheduleHarness.firing(stack, "jittery", nominal) == nil,
                            "not before nominal + jitter (\(jitter) ms)")
                    }
                    h.advance(to: nominal + jitter)
                    let started = try await ScheduleHarness.waitFiring(stack, "jittery", nominal)
                    #expect(started.type == EventType.scheduleFiringStarted)
                    #expect(started.data["jitter_ms"] == (jitter > 0 ? .number(Double(jitter)) : nil))
                    #expect(started.data["late_ms"] == 0, "started at nominal + jitter exactly (manual clock)")
                    let runID = ScheduleHarness.runID("jittery", nominal)
                    try await ScheduleHarness.waitStatus(stack, runID, .succeeded)
                    let run = try #require(try stack.store.run(runID))
                    #expect(run.trigger.scheduled_at == Timestamp.format(millis: nominal))
                }
            }
        }
    }
}

/// The jitter function itself (no log).
@Suite struct ScheduleJitterTests {
    @Test func theJitterIsAFunctionOfFlowAndNominalTimeWithinTheTriggersJitter() throws {
        let trigger = try JSONDecoder().decode(
            FlowTrigger.self, from: Data(#"{"interval":"1m","jitter":"30s"}"#.utf8))
        let nominals = (0..<200).map { Int64(1_800_000_000_000) + Int64($0) * 60_000 }
        let values = nominals.map { Engine.jitterMillis(trigger, flowID: "f", nominal: $0) }
        #expect(values.allSatisfy { (0..<30_000).contains($0) })
        // The same on every call (every scheduler), different across firings and flows.
        #expect(nominals.map { Engine.jitterMillis(trigger, flowID: "f", nominal: $0) } == values)
        #expect(Set(values).count > 150, "spread over the jitter")
        let other = nominals.map { Engine.jitterMillis(trigger, flowID: "g", nominal: $0) }
        #expect(other != values)
        let none = try JSONDecoder().decode(FlowTrigger.self, from: Data(#"{"interval":"1m"}"#.utf8))
        #expect(Engine.jitterMillis(none, flowID: "f", nominal: nominals[0]) == 0)
    }
}
