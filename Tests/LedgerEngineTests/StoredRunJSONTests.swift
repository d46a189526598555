import Foundation
import LedgerCore
import LedgerLMDB
import LedgerProjections
import LedgerTestSupport
import Testing

@testable import LedgerEngine

/// The projector folds a run's events into the state it keeps between commits (`StateCache`, taken out and changed in
/// place) and writes it after every batch: whatever the batches, the stored JSON must be, byte for byte, the run's
/// state folded from the whole log and written whole.
@Suite struct StoredRunJSONTests {
    /// Runs of six steps whose events interleave: attempts that fail and are retried, steps that succeed with an
    /// output, runs that fail and are redriven from a step.
    static func interleavedRuns(_ count: Int) -> [(sequence: UInt64, event: LedgerEvent)] {
        var numbers = RunListingTests.Numbers(state: 77)
        let steps = ["s1", "s2", "s3", "s4", "s5", "s6"]
        // Each run's events in order; the log takes the next event of a random run.
        var pending: [[LedgerEvent.Body]] = []
        var ids: [String] = []
        for run in 0..<count {
            var bodies: [LedgerEvent.Body] = [
                .runStarted(
                    FlowRunStarted(
                        run_id: "run-\(run)", flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
                        trigger: RunTrigger(kind: .manual), actor: "t", input: ["n": .number(Double(run))],
                        step_ids: steps, dedup_key: nil, message_id: nil, channel: nil))
            ]
            func attempts(_ step: String, from first: Int) {
                var attempt = first
                while numbers.next(3) == 0 {
                    bodies.append(Self.started(step, attempt))
                    bodies.append(
                        .stepAttemptFailed(
                            StepAttemptFailed(
                                step_id: step, attempt: attempt,
                                error: StepError(kind: .timeout, message: "slow \(attempt)", retryable: true),
                                started_at: "t\(attempt)", finished_at: "u\(attempt)", retry_at: "v\(attempt)")))
                    attempt += 1
                }
                bodies.append(Self.started(step, attempt))
                bodies.append(
                    .stepAttemptSucceeded(
                        StepAttemptSucceeded(
                            step_id: step, attempt: attempt, output: ["step": .string(step), "é": .number(1.5)],
                            started_at: "t", finished_at: "u")))
            }
            for step in steps { attempts(step, from: 1) }
            if numbers.next(3) == 0 {
                let from = numbers.next(steps.count)
                bodies.append(.runFailed(FlowRunFailed(error: RunError(code: "boom", message: "no"))))
                bodies.append(
                    .runRedriven(
                        FlowRunRedriven(actor: "t", from_step: steps[from], reset_steps: Array(steps[from...]))))
                for step in steps[from...] { attempts(step, from: 10) }
            }
            bodies.append(.runSucceeded(FlowRunSucceeded(output: ["ok": true])))
            pending.append(bodies)
            ids.append("run-\(run)")
        }
        var log: [(sequence: UInt64, event: LedgerEvent)] = []
        var next = Array(repeating: 0, count: count)
        while let run = (0..<count).filter({ next[$0] < pending[$0].count }).randomElement(using: &numbers) {
            let body = pending[run][next[run]]
            next[run] += 1
            let sequence = UInt64(log.count + 1)
            log.append(
                (
                    sequence,
                    LedgerEvent(
                        id: "e\(sequence)", type: body.type, time: "2026-12-03T10:00:00.000Z", runid: ids[run],
                        body: body)
                ))
        }
        return log
    }

    static func started(_ step: String, _ attempt: Int) -> LedgerEvent.Body {
        .stepAttemptStarted(
            StepAttemptStarted(
                step_id: step, attempt: attempt, idempotency_key: "\(step)-\(attempt)", command_id: nil,
                started_at: "t\(attempt)", request: nil))
    }

    @Test func runsAppliedInSmallBatchesAreStoredAsTheirWholeStates() async throws {
        let log = Self.interleavedRuns(24)
        let directory = TemporaryDirectory("stored-run-json")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 26)
        var numbers = RunListingTests.Numbers(state: 5)
        var start = 0
        var expected: [String: RunState] = [:]
        while start < log.count {
            let slice = Array(log[start..<min(start + 1 + numbers.next(4), log.count)])
            try await store.apply(slice, through: slice.last!.sequence)
            start += slice.count
            for (sequence, event) in slice {
                let id = event.runid!
                expected[id] = RunState.evolve(expected[id], event, sequence: sequence)
            }
            // After every batch: each run touched is stored as its state written whole.
            for id in Set(slice.map { $0.event.runid! }) {
                let stored = try #require(try store.withRunJSON(id) { Array($0) })
                #expect(
                    String(decoding: stored, as: UTF8.self) == String(decoding: expected[id]!.jsonBytes, as: UTF8.self))
            }
        }
        #expect(expected.count == 24)
        #expect(expected.values.allSatisfy { $0.status == .succeeded && $0.steps.count == 6 })
    }
}

/// A busy engine has many runs in flight (runs waiting on services): the projector keeps each one's state decoded
/// between batches instead of reading it back from LMDB and parsing it at every event, and lets go of a run once it
/// settled.
@Suite struct KeptRunStatesTests {
    @Test func runsInFlightAreFoldedWithoutReadingTheirStatesBack() async throws {
        let runs = 3_000
        let steps = ["s1", "s2"]
        let directory = TemporaryDirectory("kept-run-states")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 28)
        var sequence: UInt64 = 0
        var expected: [String: RunState] = [:]
        // One batch per round: every run's next event (the runs start, then each step succeeds, then they succeed).
        func round(_ body: (Int) -> LedgerEvent.Body) async throws {
            var batch: [(sequence: UInt64, event: LedgerEvent)] = []
            for run in 0..<runs {
                sequence += 1
                let event = LedgerEvent(
                    id: "e\(sequence)", type: body(run).type, time: "2026-12-03T10:00:00.000Z", runid: "run-\(run)",
                    body: body(run))
                batch.append((sequence, event))
                expected["run-\(run)"] = RunState.evolve(expected["run-\(run)"], event, sequence: sequence)
            }
            try await store.apply(batch, through: sequence)
        }
        try await round { run in
            .runStarted(
                FlowRunStarted(
                    run_id: "run-\(run)", flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
                    trigger: RunTrigger(kind: .manual), actor: "t", input: ["n": .number(Double(run))],
                    step_ids: steps, dedup_key: nil, message_id: nil, channel: nil))
        }
        for step in steps {
            try await round { _ in StoredRunJSONTests.started(step, 1) }
            try await round { _ in
                .stepAttemptSucceeded(
                    StepAttemptSucceeded(
                        step_id: step, attempt: 1, output: ["step": .string(step)], started_at: "t", finished_at: "u"))
            }
        }
        let kept = store.recent.cache(RunStatusModel.self)
        #expect(store.statesReadBack == 0, "states of runs in flight were read back from LMDB")
        #expect(kept.count == runs)
        try await round { _ in .runSucceeded(FlowRunSucceeded(output: ["ok": true])) }
        #expect(store.statesReadBack == 0)
        #expect(kept.count == 0, "settled runs are not kept")
        for run in [0, 1_234, runs - 1] {
            let stored = try #require(try store.withRunJSON("run-\(run)") { Array($0) })
            #expect(stored == expected["run-\(run)"]!.jsonBytes)
        }
        // A settled run's next event (a redrive) reads it back once, and folds as before.
        sequence += 1
        let body = LedgerEvent.Body.runRedriven(FlowRunRedriven(actor: "t", from_step: "s2", reset_steps: ["s2"]))
        let redrive = LedgerEvent(
            id: "e\(sequence)", type: body.type, time: "2026-12-03T10:00:01.000Z", runid: "run-7", body: body)
        try await store.apply([(sequence, redrive)], through: sequence)
        #expect(store.statesReadBack == 1)
        let redriven = try #require(try store.withRunJSON("run-7") { Array($0) })
        #expect(redriven == RunState.evolve(expected["run-7"], redrive, sequence: sequence)!.jsonBytes)
    }
}

extension RunListingTests.Numbers: RandomNumberGenerator {
    mutating func next() -> UInt64 {
        _ = next(1)  // steps the generator
        return state
    }
}
