import Foundation
import LedgerCore
import Testing

/// Compensation, cancellation, redrive and the run deadline on the pure decider.
@Suite struct CompensationTests {
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)
    typealias Run = DeciderTests.Run

    func flow(runTimeout: Double? = nil) -> FlowDefinition {
        var definition = FlowDefinition(
            id: "f", trigger: FlowTrigger(event: "AssistantCommandIssued", intent: "x"),
            defaults: StepDefaults(retry: RetryPolicy(max_attempts: 2, initial_ms: 1000, max_ms: 10_000, jitter: false), timeout_sec: 60),
            steps: [
                StepDefinition(id: "a", action: "calendar.schedule_event", with: ["title": "a", "start": "s"],
                    compensate: CompensationDefinition(action: "calendar.cancel_event", with: ["event_id": "{{steps.a.output.event_id}}"])),
                StepDefinition(id: "b", action: "transform", with: ["value": 1], depends_on: ["a"],
                    compensate: CompensationDefinition(action: "transform", with: ["value": "undone"])),
                StepDefinition(id: "c", action: "calendar.schedule_event", with: ["title": "c", "start": "s"], depends_on: ["b"]),
            ], output: ["text": "ok"])
        definition.run_timeout_sec = runTimeout
        return definition
    }

    func appended(_ steps: [RunStep]) -> [String] { DeciderTests().appended(steps) }

    /// Drives the run until it waits for an external answer or ends.
    func settle(_ run: inout Run, _ decider: RunDecider, now: Date) -> [String] {
        var log: [String] = []
        for _ in 0..<20 {
            let steps = decider.decide(run.state, .advance, now: now)
            let events = appended(steps)
            if events.isEmpty { break }
            log += events
            run.apply(steps)
        }
        return log
    }

    @Test func aNonRetryableFailureCompensatesCompletedStepsNewestFirst() {
        let decider = RunDecider(definition: flow())
        var run = Run(flow())
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "a", attempt: 1, result: .success(["event_id": "e-a"]), sourceSequence: nil), now: t0))
        _ = settle(&run, decider, now: t0)  // b (local) succeeds, c starts
        run.apply(decider.decide(run.state, .stepResult(stepID: "c", attempt: 1, result: .failure(StepError(kind: "denied", message: "no", retryable: false)), sourceSequence: nil), now: t0))
        let log = settle(&run, decider, now: t0)
        // b is undone inside the decision (a local action), then a's undo is sent to the calendar.
        #expect(log == ["FlowRunCompensating", "CompensationAttemptStarted:b", "CompensationAttemptSucceeded:b", "CompensationAttemptStarted:a"])
        #expect(run.state.status == .running)
        #expect(run.state.phase == "compensating")
        guard case .execute(let undo)? = decider.inFlight(run.state).first.map({ RunStep.execute($0.execution) }) else {
            Issue.record("the undo of a is not in flight")
            return
        }
        #expect(undo.action == "calendar.cancel_event")
        #expect(undo.request == ["event_id": "e-a"])
        #expect(undo.stepID == "a~compensate")
        #expect(undo.idempotencyKey == "r/a~compensate")
        run.apply(decider.decide(run.state, .stepResult(stepID: "a~compensate", attempt: 1, result: .success(["event_id": "e-a"]), sourceSequence: nil), now: t0))
        let end = settle(&run, decider, now: t0)
        #expect(end == ["FlowRunFailed"])
        #expect(run.state.status == .failed)
        #expect(run.state.error?.step_id == "c")
        #expect(run.state.step("a")?.status == .compensated)
        #expect(run.state.step("b")?.status == .compensated)
    }

    @Test func aFailingCompensationIsRetriedThenRecorded() {
        let decider = RunDecider(definition: flow())
        var run = Run(flow())
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "a", attempt: 1, result: .success(["event_id": "e-a"]), sourceSequence: nil), now: t0))
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .cancel(actor: "ops", reason: "changed my mind"), now: t0))
        #expect(run.state.step("c")?.status == .failed)
        #expect(run.state.step("c")?.attempts.last?.error?.kind == "cancelled")
        _ = settle(&run, decider, now: t0)
        var now = t0
        for attempt in 1...5 {
            let failed = decider.decide(run.state, .stepResult(stepID: "a~compensate", attempt: attempt, result: .failure(StepError(kind: "busy", message: "later", retryable: false)), sourceSequence: nil), now: now)
            #expect(appended(failed) == ["CompensationAttemptFailed:a"])
            run.apply(failed)
            now = now.addingTimeInterval(30)
            _ = settle(&run, decider, now: now)
        }
        #expect(run.state.status == .cancelled)
        #expect(run.state.step("a")?.compensation?.status == .failed)
        #expect(run.state.step("a")?.compensation?.attempts.count == 5)
    }

    @Test func cancelAndRedriveAreRefusedInTheWrongState() {
        let decider = RunDecider(definition: flow())
        var run = Run(flow())
        #expect(decider.refusal(run.state, .redrive(actor: "x", fromStep: nil)) != nil)
        #expect(decider.refusal(run.state, .cancel(actor: "x", reason: nil)) == nil)
        run.apply(decider.decide(run.state, .cancel(actor: "x", reason: nil), now: t0))
        #expect(decider.refusal(run.state, .cancel(actor: "x", reason: nil)) != nil)
        _ = settle(&run, decider, now: t0)
        #expect(run.state.status == .cancelled)
        #expect(decider.refusal(run.state, .cancel(actor: "x", reason: nil)) != nil)
    }

    @Test func aRedriveKeepsEarlierResultsAndRunsTheFailedStepAgain() {
        var definition = flow()
        definition.steps[0].compensate = nil
        definition.steps[1].compensate = nil
        let decider = RunDecider(definition: definition)
        var run = Run(definition)
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "a", attempt: 1, result: .success(["event_id": "e-a"]), sourceSequence: nil), now: t0))
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "c", attempt: 1, result: .failure(StepError(kind: "denied", message: "no", retryable: false)), sourceSequence: nil), now: t0))
        #expect(settle(&run, decider, now: t0) == ["FlowRunFailed"])
        let redrive = decider.decide(run.state, .redrive(actor: "ops", fromStep: nil), now: t0)
        guard case .append(.runRedriven(let event))? = redrive.first else {
            Issue.record("no redrive event")
            return
        }
        #expect(event.from_step == "c")
        #expect(event.reset_steps == ["c"])
        run.apply(redrive)
        #expect(run.state.status == .running)
        let again = decider.decide(run.state, .advance, now: t0)
        #expect(appended(again) == ["StepAttemptStarted:c"])
        run.apply(again)
        #expect(run.state.step("c")?.attempts.map(\.attempt) == [1, 2])
        #expect(run.state.step("a")?.attempts.count == 1, "a is not run again")
        #expect(run.state.step("c")?.idempotency_key == "r/c")
    }

    @Test func aRedriveAfterCompensationRunsTheUndoneStepsWithNewKeys() {
        let decider = RunDecider(definition: flow())
        var run = Run(flow())
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "a", attempt: 1, result: .success(["event_id": "e-a"]), sourceSequence: nil), now: t0))
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "c", attempt: 1, result: .failure(StepError(kind: "denied", message: "no", retryable: false)), sourceSequence: nil), now: t0))
        _ = settle(&run, decider, now: t0)
        run.apply(decider.decide(run.state, .stepResult(stepID: "a~compensate", attempt: 1, result: .success([:]), sourceSequence: nil), now: t0))
        _ = settle(&run, decider, now: t0)
        #expect(run.state.status == .failed)
        run.apply(decider.decide(run.state, .redrive(actor: "ops", fromStep: "c"), now: t0))
        #expect(Set(run.state.steps.filter { $0.status == .queued }.map(\.step_id)) == ["a", "b", "c"])
        let again = decider.decide(run.state, .advance, now: t0)
        guard case .execute(let execution)? = again.first(where: { if case .execute = $0 { return true } else { return false } }) else {
            Issue.record("a does not run again")
            return
        }
        #expect(execution.stepID == "a")
        #expect(execution.idempotencyKey == "r/a/g1", "its effect was undone, so it needs a new key")
    }

    @Test func theRunDeadlineFailsARunThatTakesTooLong() {
        let decider = RunDecider(definition: flow(runTimeout: 10))
        var run = Run(flow(runTimeout: 10))
        let first = decider.decide(run.state, .advance, now: t0)
        #expect(first.contains { if case .wakeUp = $0 { return true } else { return false } })
        run.apply(first)
        let late = Timestamp.parse(run.state.created_at)!.addingTimeInterval(11)
        let log = settle(&run, decider, now: late)
        #expect(log.first == "FlowRunFailed")
        #expect(run.state.error?.code == "run_timeout")
    }
}
