import Foundation
import LedgerCore
import Testing

/// The compensating and cancelling phases, the finished ones and redrive, one transition per test:
/// given(events) / when(command) / then(actions).
@Suite struct CompensationTests {
    /// a (a calendar command, undone by the calendar), b (local, undone locally), c (a calendar command, no undo).
    static func flow(compensated: Bool = true) -> FlowDefinition {
        FlowDefinition(
            id: "f", trigger: FlowTrigger(event: "AssistantCommandIssued", intent: "x"),
            defaults: StepDefaults(
                retry: RetryPolicy(max_attempts: 2, initial_ms: 1000, max_ms: 10_000, jitter: false), timeout_sec: 60),
            steps: [
                StepDefinition(
                    id: "a", action: "calendar.schedule_event", with: ["title": "a", "start": "s"],
                    compensate: compensated
                        ? CompensationDefinition(
                            action: "calendar.cancel_event", with: ["event_id": "{{steps.a.output.event_id}}"]) : nil),
                StepDefinition(
                    id: "b", action: "transform", with: ["value": 1], depends_on: ["a"],
                    compensate: compensated
                        ? CompensationDefinition(action: "transform", with: ["value": "undone"]) : nil),
                StepDefinition(
                    id: "c", action: "calendar.schedule_event", with: ["title": "c", "start": "s"], depends_on: ["b"]),
            ], output: ["text": "ok"])
    }

    static let aRequest: JSONValue = ["title": "a", "start": "s"]
    static let cRequest: JSONValue = ["title": "c", "start": "s"]
    static let undoA: JSONValue = ["event_id": "e-a"]
    static let failure = RunError(code: "denied", message: "step c failed after 1 attempt(s): no", step_id: "c")

    /// a and b done, c running.
    static let cRunning: [LedgerEvent.Body] = [
        Run.started("a", request: aRequest), Run.succeeded("a", output: ["event_id": "e-a"]),
        Run.succeeded("b", output: 1),
        Run.started("c", request: cRequest),
    ]
    /// c failed for good: the run compensates.
    static let compensating =
        cRunning + [Run.failed("c", 1, Run.denied), .runCompensating(FlowRunCompensating(error: failure))]
    /// b undone; a's undo sent.
    static let undoingA =
        compensating + [
            Run.compensationStarted("b", request: ["value": "undone"]),
            Run.compensationSucceeded("b", output: "undone"),
            Run.compensationStarted("a", request: undoA),
        ]
    let run = RunScenario(flow())

    @Test func aStepFailedForGoodAfterOthersSucceededStartsCompensating() {
        let compensating = run.given(Self.cRunning + [Run.failed("c", 1, Run.denied)]).when(.advance)
            .then([.append(.runCompensating(FlowRunCompensating(error: Self.failure)))])
        #expect(compensating.state.phase == .compensating)
        #expect(compensating.state.status == .running)
    }

    @Test func aLocalCompensationRunsInsideTheDecisionNewestStepFirst() {
        run.given(Self.compensating).when(.advance).then([
            .append(Run.compensationStarted("b", request: ["value": "undone"])),
            .append(Run.compensationSucceeded("b", output: "undone")),
        ])
    }

    @Test func theUndoOfACommandStepIsSentToItsService() {
        let undoing = run.given(
            Self.compensating + [
                Run.compensationStarted("b", request: ["value": "undone"]),
                Run.compensationSucceeded("b", output: "undone"),
            ]
        )
        .when(.advance)
        .then([
            .append(Run.compensationStarted("a", request: Self.undoA)),
            Run.execute(.compensation(of: "a"), action: "calendar.cancel_event", request: Self.undoA),
            .wakeUp(at: Run.at(60)),
        ])
        #expect(undoing.state.step("b")?.status == .compensated)
    }

    @Test func aCompensationInFlightOnlyWaitsForItsDeadline() {
        run.given(Self.undoingA).when(.advance, at: Run.at(30)).then([.wakeUp(at: Run.at(60))])
    }

    @Test func anAnswerToACompensationRecordsIt() {
        run.given(Self.undoingA)
            .when(
                .recordResult(
                    .compensation(of: "a"), attempt: 1, result: .success(["cancelled": true]), sourceSequence: nil)
            )
            .then([.append(Run.compensationSucceeded("a", output: ["cancelled": true]))])
    }

    @Test func aStepAnswerDoesNotCountAsItsCompensationsAnswer() {
        run.given(Self.undoingA)
            .when(.recordResult(.step("a"), attempt: 1, result: .success([:]), sourceSequence: nil))
            .then([])
    }

    @Test func whenEverythingIsUndoneTheRunFailsWithItsError() {
        let failed = run.given(Self.undoingA + [Run.compensationSucceeded("a", output: [:])]).when(.advance)
            .then([.append(.runFailed(FlowRunFailed(error: Self.failure)))])
        #expect(failed.state.status == .failed)
        #expect(failed.state.step("a")?.status == .compensated)
        #expect(failed.state.step("b")?.status == .compensated)
    }

    @Test func aFailedCompensationIsRetriedEvenWhenTheErrorSaysNot() {
        let error = StepError(kind: StepErrorKind("busy"), message: "later", retryable: false)
        run.given(Self.undoingA)
            .when(.recordResult(.compensation(of: "a"), attempt: 1, result: .failure(error), sourceSequence: nil))
            .then([.append(Run.compensationFailed("a", 1, error, retryAt: Run.at(1))), .wakeUp(at: Run.at(1))])
    }

    @Test func aQueuedCompensationRetryWaitsThenStartsTheNextAttempt() {
        let queued = run.given(Self.undoingA + [Run.compensationFailed("a", 1, Run.busy, retryAt: Run.at(1))])
        queued.when(.advance, at: Run.at(0.5)).then([.wakeUp(at: Run.at(1))])
        queued.when(.advance, at: Run.at(1)).then([
            .append(Run.compensationStarted("a", 2, request: Self.undoA, at: Run.at(1))),
            Run.execute(.compensation(of: "a"), 2, action: "calendar.cancel_event", request: Self.undoA, at: Run.at(1)),
            .wakeUp(at: Run.at(61)),
        ])
    }

    @Test func aCompensationIsTriedAtLeastFiveTimesThenRecordedAsFailed() {
        // The step's policy allows 2 attempts; an undo gets at least 5.
        run.given(Self.undoingA + [Run.compensationStarted("a", 4, request: Self.undoA)])
            .when(.recordResult(.compensation(of: "a"), attempt: 4, result: .failure(Run.busy), sourceSequence: nil))
            .then([.append(Run.compensationFailed("a", 4, Run.busy, retryAt: Run.at(8))), .wakeUp(at: Run.at(8))])
        run.given(Self.undoingA + [Run.compensationStarted("a", 5, request: Self.undoA)])
            .when(.recordResult(.compensation(of: "a"), attempt: 5, result: .failure(Run.busy), sourceSequence: nil))
            .then([.append(Run.compensationFailed("a", 5, Run.busy))])
    }

    @Test func aCompensationThatRanOutOfAttemptsIsNamedInTheRunsError() {
        var error = Self.failure
        error.message += "; compensation failed for a (see their attempts)"
        run.given(Self.undoingA + [Run.compensationFailed("a", 1, Run.denied)]).when(.advance)
            .then([.append(.runFailed(FlowRunFailed(error: error)))])
    }

    @Test func aLateCompensationTimesOut() {
        let timeout = StepError(kind: .timeout, message: "no answer within 60s", retryable: true)
        run.given(Self.undoingA).when(.advance, at: Run.at(61))
            .then([
                .append(Run.compensationFailed("a", 1, timeout, finished: Run.at(61), retryAt: Run.at(62))),
                .wakeUp(at: Run.at(62)),
            ])
    }

    @Test func theRunDeadlineCompensatesWhatWasDone() {
        var definition = Self.flow()
        definition.run_timeout_sec = 10
        RunScenario(definition).given(Self.cRunning).when(.advance, at: Run.at(11))
            .then([
                .append(
                    .runCompensating(
                        FlowRunCompensating(
                            error: RunError(code: "run_timeout", message: "the run did not finish within 10s"))))
            ])
    }

    // MARK: cancelling

    @Test func aCancelAbandonsRunningStepsSkipsQueuedOnesAndCompensates() {
        let cancelling = run.given(Self.cRunning).when(.cancel(actor: "ops", reason: "changed my mind"))
            .then([.append(.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: "changed my mind")))])
        #expect(cancelling.state.phase == .cancelling(actor: "ops"))
        #expect(cancelling.state.cancel_requested_by == "ops")
        #expect(cancelling.state.step("c")?.status == .failed)
        #expect(cancelling.state.step("c")?.attempts.last?.error?.kind == .cancelled)
        #expect(cancelling.state.error == RunError(code: "cancelled", message: "cancelled by ops: changed my mind"))
        cancelling.when(.advance).then([
            .append(Run.compensationStarted("b", request: ["value": "undone"])),
            .append(Run.compensationSucceeded("b", output: "undone")),
        ])
        let queued = run.given(
            Run.started("a", request: Self.aRequest),
            .runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil)))
        #expect(queued.state.step("b")?.status == .skipped)
        #expect(queued.state.step("b")?.skipped_reason == "the run was cancelled")
    }

    @Test func aCancellingRunEndsCancelledOnceNothingIsLeftToUndo() {
        let cancelled = run.given(
            Run.started("a", request: Self.aRequest),
            .runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil))
        )
        .when(.advance)
        .then([.append(.runCancelled(FlowRunCancelled(actor: "ops")))])
        #expect(cancelled.state.phase == .cancelled(actor: "ops"))
        #expect(cancelled.state.status == .cancelled)
    }

    @Test func aCancelledRunWhoseUndoRanOutOfAttemptsStillEndsCancelled() {
        run.given(
            Self.cRunning + [.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil))]
                + [
                    Run.compensationStarted("b", request: ["value": "undone"]),
                    Run.compensationSucceeded("b", output: "undone"),
                ]
                + [Run.compensationStarted("a", request: Self.undoA), Run.compensationFailed("a", 1, Run.denied)]
        )
        .when(.advance)
        .then([.append(.runCancelled(FlowRunCancelled(actor: "ops")))])
    }

    @Test func aCancelWhileCompensatingAfterAFailureIsAccepted() {
        let cancelling = run.given(Self.undoingA).when(.cancel(actor: "ops", reason: nil))
            .then([.append(.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil)))])
        #expect(cancelling.state.phase == .cancelling(actor: "ops"))
    }

    @Test func aSecondCancelIsRefused() {
        run.given(.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil)))
            .when(.cancel(actor: "x", reason: nil))
            .then([.refuse("run r is already being cancelled")])
    }

    @Test func aLateAnswerOfAnAbandonedStepIsRecordedWithoutChangingItsStatus() {
        let recorded = run.given(
            Self.cRunning + [.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil))]
        )
        .when(.recordResult(.step("c"), attempt: 1, result: .success([:]), sourceSequence: nil))
        .then([
            .append(
                .stepLateResultRecorded(
                    StepLateResultRecorded(
                        step_id: "c", attempt: 1, output: [:], received_at: Run.text(Run.t0), compensable: false)))
        ])
        #expect(recorded.state.step("c")?.status == .failed)
        #expect(recorded.state.phase == .cancelling(actor: "ops"))
    }

    // MARK: finished runs

    static let failed = cRunning + [Run.failed("c", 1, Run.denied), .runFailed(FlowRunFailed(error: failure))]

    @Test func cancelOfAFinishedRunIsRefused() {
        run.given(Self.failed).when(.cancel(actor: "x", reason: nil))
            .then([.refuse("run r has already finished (FAILED); only unfinished runs can be cancelled")])
        run.given(
            .runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil)),
            .runCancelled(FlowRunCancelled(actor: "ops"))
        )
        .when(.cancel(actor: "x", reason: nil))
        .then([.refuse("run r has already finished (CANCELLED); only unfinished runs can be cancelled")])
    }

    @Test func aFinishedRunIgnoresAdvanceAndLateAnswers() {
        let finished = run.given(Self.failed)
        finished.when(.advance, at: Run.at(1000)).then([])
        finished.when(.recordResult(.step("c"), attempt: 1, result: .success([:]), sourceSequence: nil)).then([])
    }

    @Test func redriveOfASucceededOrCancelledRunIsRefused() {
        run.given(.runSucceeded(FlowRunSucceeded(output: [:]))).when(.redrive(actor: "ops", fromStep: nil))
            .then([.refuse("run r is SUCCEEDED; only FAILED runs can be redriven")])
        run.given(
            .runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: nil)),
            .runCancelled(FlowRunCancelled(actor: "ops"))
        )
        .when(.redrive(actor: "ops", fromStep: nil))
        .then([.refuse("run r is CANCELLED; only FAILED runs can be redriven")])
    }

    @Test func redriveFromAStepTheFlowDoesNotHaveIsRefused() {
        run.given(Self.failed).when(.redrive(actor: "ops", fromStep: "zz")).then([.refuse("flow f has no step \"zz\"")])
    }

    @Test func aRedriveKeepsEarlierResultsAndRunsTheFailedStepAgain() {
        let redriven = RunScenario(Self.flow(compensated: false)).given(Self.failed)
            .when(.redrive(actor: "ops", fromStep: nil))
            .then([.append(.runRedriven(FlowRunRedriven(actor: "ops", from_step: "c", reset_steps: ["c"])))])
        #expect(redriven.state.phase == .running)
        #expect(redriven.state.redrives == 1)
        #expect(redriven.state.error == nil)
        let again = redriven.when(.advance).then([
            .append(Run.started("c", 2, request: Self.cRequest)),
            Run.execute(.step("c"), 2, action: "calendar.schedule_event", request: Self.cRequest),
            .wakeUp(at: Run.at(60)),
        ])
        #expect(again.state.step("a")?.attempts.count == 1, "a is not run again")
    }

    @Test func aRedriveAfterCompensationRunsTheUndoneStepsWithNewKeys() {
        let compensatedAndFailed =
            Self.undoingA + [
                Run.compensationSucceeded("a", output: [:]), .runFailed(FlowRunFailed(error: Self.failure)),
            ]
        let redriven = run.given(compensatedAndFailed).when(.redrive(actor: "ops", fromStep: "c"))
            .then([.append(.runRedriven(FlowRunRedriven(actor: "ops", from_step: "c", reset_steps: ["a", "b", "c"])))])
        // Its effect was undone, so it needs a new key.
        redriven.when(.advance).then([
            .append(Run.started("a", 2, request: Self.aRequest, key: "r/a/g1")),
            Run.execute(.step("a"), 2, action: "calendar.schedule_event", request: Self.aRequest, key: "r/a/g1"),
            .wakeUp(at: Run.at(60)),
        ])
    }

    // MARK: after a restart

    @Test func attemptsInFlightAreRebuiltWithTheirKeys() {
        let decider = RunDecider(definition: Self.flow())
        let inFlight = decider.inFlight(run.given(Self.undoingA).state)
        #expect(
            inFlight.map(\.execution) == [
                StepExecution(
                    runID: "r", target: .compensation(of: "a"), attempt: 1, action: "calendar.cancel_event",
                    request: Self.undoA,
                    idempotencyKey: "r/a~compensate", commandID: "r/a~compensate/1", deadline: Run.at(60),
                    onBehalfOf: ["user_id": "u"])
            ])
        #expect(inFlight.map(\.startedAt) == [Run.t0])
        #expect(decider.inFlight(run.given(Self.failed).state).isEmpty)
    }
}
