import Foundation
import LedgerCore
import Testing

/// The answer to an attempt the run abandoned (cancelled, or timed out) that arrives after all: its effect happened,
/// so it is recorded, and undone (once) when the step has a compensation and did not succeed after all.
@Suite struct LateResultTests {
    let run = RunScenario(CompensationTests.flow())
    static let aRequest = CompensationTests.aRequest
    static let lateOutput: JSONValue = ["event_id": "e-late"]
    static let undoLate: JSONValue = ["event_id": "e-late"]

    static func late(
        _ step: String, _ attempt: Int = 1, output: JSONValue = lateOutput, compensable: Bool = true
    )
        -> LedgerEvent.Body
    {
        .stepLateResultRecorded(
            StepLateResultRecorded(
                step_id: step, attempt: attempt, output: output, received_at: Run.text(Run.t0), source_sequence: 42,
                compensable: compensable))
    }

    static func answer(_ step: String, _ attempt: Int = 1, _ output: JSONValue = lateOutput) -> RunCommand {
        .recordResult(.step(step), attempt: attempt, result: .success(output), sourceSequence: 42)
    }

    /// a (undone by the calendar) was running when the run was cancelled; the run ended CANCELLED.
    static let cancelledWhileARan: [LedgerEvent.Body] = [
        Run.started("a", request: aRequest),
        .runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil)),
        .runCancelled(FlowRunCancelled(actor: "ops")),
    ]

    @Test func aLateEffectOfACancelledStepIsRecordedOnceAndUndoneByTheFinishedRun() {
        let recorded = run.given(Self.cancelledWhileARan).when(Self.answer("a")).then([.append(Self.late("a"))])
        #expect(recorded.state.status == .cancelled)
        #expect(recorded.state.step("a")?.status == .failed)
        #expect(recorded.state.step("a")?.output == Self.lateOutput)
        #expect(recorded.state.step("a")?.late_results?.count == 1)
        #expect(recorded.state.isSettled == false)
        // The same answer again (a redelivery) changes nothing.
        recorded.when(Self.answer("a")).then([])
        // The finished run undoes it with the step's compensation, reading the late output.
        let undoing = recorded.when(.advance).then([
            .append(Run.compensationStarted("a", request: Self.undoLate)),
            Run.execute(.compensation(of: "a"), action: "calendar.cancel_event", request: Self.undoLate),
            .wakeUp(at: Run.at(60)),
        ])
        undoing.when(.advance, at: Run.at(30)).then([.wakeUp(at: Run.at(60))])
        // A second late answer (another attempt, the same effect) is recorded but not undone twice.
        let done = undoing.when(
            .recordResult(
                .compensation(of: "a"), attempt: 1, result: .success(["cancelled": true]), sourceSequence: nil)
        )
        .then([.append(Run.compensationSucceeded("a", output: ["cancelled": true]))])
        #expect(done.state.step("a")?.status == .compensated)
        #expect(done.state.status == .cancelled)
        #expect(done.state.isSettled)
        done.when(.advance).then([])
    }

    @Test func aLateEffectOfAStepWithoutCompensationIsRecordedAndLeftAlone() {
        // c (no compensation) was running when the run was cancelled.
        let cancelled = run.given(
            CompensationTests.cRunning + [.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil))])
        let recorded = cancelled.when(Self.answer("c")).then([.append(Self.late("c", compensable: false))])
        #expect(recorded.state.step("c")?.late_results?.first?.compensable == false)
        // The run goes on cancelling as before: b is undone (a after it), the late effect of c is not.
        recorded.when(.advance).then([
            .append(Run.compensationStarted("b", request: ["value": "undone"])),
            .append(Run.compensationSucceeded("b", output: "undone")),
        ])
    }

    @Test func aLateFailureOrAnAnswerToAnAttemptThatWasNotAbandonedChangesNothing() {
        run.given(Self.cancelledWhileARan)
            .when(.recordResult(.step("a"), attempt: 1, result: .failure(Run.denied), sourceSequence: 42))
            .then([])
        // c failed for good with the service's own answer: a success after that is no late effect.
        run.given(CompensationTests.failed).when(Self.answer("c")).then([])
    }

    @Test func aTimedOutAttemptAnsweringWhileItsRetryRunsIsRecordedButNotUndone() {
        let timedOut = run.given(
            Run.started("a", request: Self.aRequest),
            Run.failed(
                "a", 1, StepError(kind: .timeout, message: "no answer within 60s", retryable: true),
                finished: Run.at(60), retryAt: Run.at(61)),
            Run.started("a", 2, request: Self.aRequest, at: Run.at(61)))
        let recorded = timedOut.when(Self.answer("a", 1), at: Run.at(62)).then([
            .append(
                .stepLateResultRecorded(
                    StepLateResultRecorded(
                        step_id: "a", attempt: 1, output: Self.lateOutput, received_at: Run.text(Run.at(62)),
                        source_sequence: 42, compensable: true)))
        ])
        // The retry carries the same idempotency key: its success is the same effect, undone with the step.
        #expect(recorded.state.step("a")?.status == .running)
        #expect(recorded.state.step("a")?.hasLateEffectToUndo == false)
        recorded.when(Self.answer("a", 2), at: Run.at(63)).then([
            .append(Run.succeeded("a", 2, output: Self.lateOutput, at: Run.at(61), finished: Run.at(63), source: 42))
        ])
    }

    @Test func aStepThatTimedOutForGoodAndAnsweredLateIsUndoneWhenTheRunFails() {
        let failedForGood = run.given(
            Run.started("a", request: Self.aRequest),
            Run.failed("a", 1, StepError(kind: .timeout, message: "no answer within 60s", retryable: false)))
        let recorded = failedForGood.when(Self.answer("a")).then([.append(Self.late("a"))])
        let compensating = recorded.when(.advance).then([
            .append(
                .runCompensating(
                    FlowRunCompensating(
                        error: RunError(
                            code: "timeout", message: "step a failed after 1 attempt(s): no answer within 60s",
                            step_id: "a"))))
        ])
        compensating.when(.advance).then([
            .append(Run.compensationStarted("a", request: Self.undoLate)),
            Run.execute(.compensation(of: "a"), action: "calendar.cancel_event", request: Self.undoLate),
            .wakeUp(at: Run.at(60)),
        ])
    }

    @Test func aRedriveWaitsForTheUndoOfALateEffect() {
        let failed = run.given(
            Run.started("a", request: Self.aRequest),
            Run.failed("a", 1, StepError(kind: .timeout, message: "no answer within 60s", retryable: false)),
            .runFailed(FlowRunFailed(error: RunError(code: "timeout", message: "a timed out", step_id: "a"))),
            Self.late("a"), Run.compensationStarted("a", request: Self.undoLate))
        failed.when(.redrive(actor: "ops", fromStep: nil)).then([
            .refuse(
                "run r is still undoing the late effect of step a; redrive it once that compensation has ended")
        ])
        let undone = failed.given(Run.compensationSucceeded("a", output: ["cancelled": true]))
        #expect(undone.state.isSettled)
        let redriven = undone.when(.redrive(actor: "ops", fromStep: nil)).then([
            .append(.runRedriven(FlowRunRedriven(actor: "ops", from_step: "a", reset_steps: ["a", "b", "c"])))
        ])
        // The undone effect is not reused: the step runs again with a new idempotency key.
        #expect(redriven.state.step("a")?.generation == 1)
        #expect(redriven.state.step("a")?.late_results == nil)
    }
}
