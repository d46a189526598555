import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// Given/when/then on the pure run decider and the folds.
@Suite struct DeciderTests {
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)

    func flow(_ steps: [StepDefinition], output: JSONValue = ["text": "done {{steps.create.output.event_id}}"]) -> FlowDefinition {
        FlowDefinition(
            id: "f", trigger: FlowTrigger(event: "AssistantCommandIssued", intent: "x"),
            defaults: StepDefaults(retry: RetryPolicy(max_attempts: 3, initial_ms: 1000, max_ms: 10_000, jitter: false), timeout_sec: 60),
            steps: steps, output: output)
    }

    /// A run folded from its start; `apply` appends the decision's events the way the engine does.
    struct Run: Sendable {
        var state: RunState
        var sequence: UInt64 = 1

        init(_ definition: FlowDefinition, mode: RunMode = .live) {
            let started = FlowRunStarted(
                run_id: "r", flow_id: definition.id, flow_version: 1, definition_hash: "h", mode: mode,
                trigger: RunTrigger(kind: "event", data: ["entities": ["title": "T", "go": false], "user": ["id": "u"]]),
                actor: "user:u", input: [:], step_ids: definition.steps.map(\.id), dedup_key: "sig", message_id: "m", channel: nil)
            state = RunState.evolve(nil, LedgerEvent(id: "e0", type: EventType.runStarted, time: "2026-11-23T10:00:00.000Z", runid: "r", body: .runStarted(started)), sequence: 1)!
        }

        mutating func apply(_ steps: [RunStep]) {
            for case .append(let body) in steps {
                sequence += 1
                state = RunState.evolve(state, LedgerEvent(id: "e\(sequence)", type: body.type, time: "2026-11-23T10:00:0\(sequence % 10).000Z", runid: "r", body: body), sequence: sequence)!
            }
        }
    }

    func appended(_ steps: [RunStep]) -> [String] {
        steps.compactMap { if case .append(let body) = $0 { return body.type + (body.stepID.map { ":" + $0 } ?? "") } else { return nil } }
    }

    @Test func aCommandStepWaitsForItsAnswerThenTheRunFinishes() {
        let definition = flow([
            StepDefinition(id: "create", action: "calendar.schedule_event", with: ["title": "{{trigger.entities.title}}", "start": "s"]),
            StepDefinition(id: "shape", action: "transform", with: ["value": ["id": "{{steps.create.output.event_id}}"]], depends_on: ["create"]),
        ])
        let decider = RunDecider(definition: definition)
        var run = Run(definition)
        let first = decider.decide(run.state, .advance, now: t0)
        #expect(appended(first) == ["StepAttemptStarted:create"])
        guard case .execute(let execution)? = first.first(where: { if case .execute = $0 { return true } else { return false } }) else {
            Issue.record("no execution")
            return
        }
        #expect(execution.request == ["title": "T", "start": "s"])
        #expect(execution.idempotencyKey == "r/create")
        #expect(execution.commandID == "r/create/1")
        #expect(execution.onBehalfOf == ["user_id": "u"])
        run.apply(first)
        #expect(run.state.step("create")?.status == .running)
        // Nothing else is due while the calendar has not answered.
        #expect(appended(decider.decide(run.state, .advance, now: t0)).isEmpty)

        let answered = decider.decide(run.state, .stepResult(stepID: "create", attempt: 1, result: .success(["event_id": "e-9"]), sourceSequence: 7), now: t0)
        #expect(appended(answered) == ["StepAttemptSucceeded:create"])
        run.apply(answered)
        let next = decider.decide(run.state, .advance, now: t0)
        #expect(appended(next) == ["StepAttemptSucceeded:shape"])
        run.apply(next)
        let finish = decider.decide(run.state, .advance, now: t0)
        #expect(appended(finish) == ["FlowRunSucceeded"])
        guard case .publishOutput(let output) = finish.first else {
            Issue.record("the output is published before the run's final event")
            return
        }
        #expect(output.text == "done e-9")
        #expect(output.message_id == "m")
        run.apply(finish)
        #expect(run.state.status == .succeeded)
        #expect(run.state.step("shape")?.output == ["id": "e-9"])
        // A late duplicate answer changes nothing.
        #expect(decider.decide(run.state, .stepResult(stepID: "create", attempt: 1, result: .success([:]), sourceSequence: 9), now: t0).isEmpty)
    }

    @Test func aRetryableFailureWaitsForItsBackoffThenTriesAgain() {
        let definition = flow([StepDefinition(id: "create", action: "calendar.schedule_event", with: ["title": "x", "start": "s"])])
        let decider = RunDecider(definition: definition)
        var run = Run(definition)
        run.apply(decider.decide(run.state, .advance, now: t0))
        let failed = decider.decide(run.state, .stepResult(stepID: "create", attempt: 1, result: .failure(StepError(kind: "busy", message: "try later", retryable: true)), sourceSequence: nil), now: t0)
        #expect(appended(failed) == ["StepAttemptFailed:create"])
        #expect(failed.contains(.wakeUp(at: t0.addingTimeInterval(1))))
        run.apply(failed)
        #expect(run.state.step("create")?.status == .queued)
        #expect(appended(decider.decide(run.state, .advance, now: t0.addingTimeInterval(0.5))).isEmpty)
        let retry = decider.decide(run.state, .advance, now: t0.addingTimeInterval(1))
        #expect(appended(retry) == ["StepAttemptStarted:create"])
        run.apply(retry)
        #expect(run.state.step("create")?.attempts.map(\.attempt) == [1, 2])
        #expect(run.state.step("create")?.command_id == "r/create/2")
        #expect(run.state.step("create")?.idempotency_key == "r/create")
    }

    @Test func aNonRetryableFailureFailsTheRun() {
        let definition = flow([StepDefinition(id: "create", action: "calendar.schedule_event", with: ["title": "x", "start": "s"])])
        let decider = RunDecider(definition: definition)
        var run = Run(definition)
        run.apply(decider.decide(run.state, .advance, now: t0))
        run.apply(decider.decide(run.state, .stepResult(stepID: "create", attempt: 1, result: .failure(StepError(kind: "denied", message: "no", retryable: false)), sourceSequence: nil), now: t0))
        let end = decider.decide(run.state, .advance, now: t0)
        #expect(appended(end) == ["FlowRunFailed"])
        run.apply(end)
        #expect(run.state.status == .failed)
        #expect(run.state.error?.step_id == "create")
    }

    @Test func aLateStepTimesOut() {
        let definition = flow([StepDefinition(id: "create", action: "calendar.schedule_event", with: ["title": "x", "start": "s"], timeout_sec: 5)])
        let decider = RunDecider(definition: definition)
        var run = Run(definition)
        let start = decider.decide(run.state, .advance, now: t0)
        run.apply(start)
        // started_at comes from the decision's clock.
        let started = Timestamp.parse(run.state.step("create")!.attempts[0].started_at)!
        let late = decider.decide(run.state, .advance, now: started.addingTimeInterval(6))
        #expect(appended(late) == ["StepAttemptFailed:create"])
        run.apply(late)
        #expect(run.state.step("create")?.attempts.first?.error?.kind == "timeout")
    }

    @Test func falseConditionsSkipAndSkippingPropagates() {
        let definition = flow(
            [
                StepDefinition(id: "gate", action: "transform", with: ["value": 1], when: "{{trigger.entities.go}}"),
                StepDefinition(id: "after", action: "transform", with: ["value": 2], depends_on: ["gate"]),
                StepDefinition(id: "other", action: "transform", with: ["value": 3]),
            ], output: ["text": "ok"])
        let decider = RunDecider(definition: definition)
        var run = Run(definition)
        var rounds = 0
        while !run.state.status.isTerminal, rounds < 10 {
            run.apply(decider.decide(run.state, .advance, now: t0))
            rounds += 1
        }
        #expect(run.state.status == .succeeded)
        #expect(run.state.step("gate")?.status == .skipped)
        #expect(run.state.step("after")?.status == .skipped)
        #expect(run.state.step("other")?.status == .succeeded)
    }

    @Test func dryRunsSimulateSideEffects() {
        let definition = flow([StepDefinition(id: "create", action: "calendar.schedule_event", with: ["title": "x", "start": "s"])], output: ["text": "ok"])
        let decider = RunDecider(definition: definition)
        var run = Run(definition, mode: .dry)
        let steps = decider.decide(run.state, .advance, now: t0)
        #expect(appended(steps) == ["StepAttemptSucceeded:create"])
        run.apply(steps)
        #expect(run.state.step("create")?.output?["simulated"] == true)
        let finish = decider.decide(run.state, .advance, now: t0)
        #expect(!finish.contains { if case .publishOutput = $0 { return true } else { return false } })
    }

    @Test func theFlowFoldKeepsEveryVersionAndTheStatus() {
        func event(_ body: LedgerEvent.Body) -> LedgerEvent { LedgerEvent(id: "x", type: body.type, time: "2026-11-23T10:00:00.000Z", flowid: "f", body: body) }
        var record = FlowVersionsModel.evolve(nil, event(.flowVersionRecorded(FlowVersionRecorded(flow_id: "f", version: 1, definition: ["id": "f"], definition_hash: "h1", actor: "a"))), sequence: 1)
        #expect(record?.status == "draft")
        record = FlowVersionsModel.evolve(record, event(.flowStatusChanged(FlowStatusChanged(flow_id: "f", version: 1, actor: "a", status: "active"))), sequence: 2)
        record = FlowVersionsModel.evolve(record, event(.flowVersionRecorded(FlowVersionRecorded(flow_id: "f", version: 2, definition: ["id": "f", "name": "n"], definition_hash: "h2", actor: "b", based_on: 1))), sequence: 3)
        #expect(record?.status == "active")
        #expect(record?.active_version == 1)
        #expect(record?.current_version == 2)
        #expect(record?.versions.map(\.definition_hash) == ["h1", "h2"])
        #expect(record?.history.map(\.change) == ["registered", "activated", "new_version"])
        #expect(record?.last_sequence == 3)
    }

    @Test func theDedupFoldKeepsTheFirstRun() {
        func started(_ run: String) -> LedgerEvent {
            let body = LedgerEvent.Body.runStarted(FlowRunStarted(
                run_id: run, flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live, trigger: RunTrigger(kind: "event"),
                actor: "a", input: [:], step_ids: [], dedup_key: "sig", message_id: nil, channel: nil))
            return LedgerEvent(id: run, type: body.type, time: "t", runid: run, body: body)
        }
        #expect(DedupModel.key(for: started("r1")) == "f/sig")
        let first = DedupModel.evolve(nil, started("r1"), sequence: 1)
        #expect(DedupModel.evolve(first, started("r2"), sequence: 2) == "r1")
    }
}
