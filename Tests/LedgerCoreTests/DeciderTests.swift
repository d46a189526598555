import Foundation
import LedgerCore
import Testing

/// The running phase of the decider, one transition per test: given(events) / when(command) / then(actions).
@Suite struct DeciderTests {
    static func flow(
        _ steps: [StepDefinition], output: JSONValue = ["text": "done {{steps.create.output.event_id}}"]
    ) -> FlowDefinition {
        FlowDefinition(
            id: "f", trigger: FlowTrigger(event: "AssistantCommandIssued", intent: "x"),
            defaults: StepDefaults(
                retry: RetryPolicy(max_attempts: 3, initial_ms: 1000, max_ms: 10_000, jitter: false), timeout_sec: 60),
            steps: steps, output: output)
    }

    static let create = StepDefinition(
        id: "create", action: "calendar.schedule_event", with: ["title": "{{trigger.entities.title}}", "start": "s"])
    static let shape = StepDefinition(
        id: "shape", action: "transform", with: ["value": ["id": "{{steps.create.output.event_id}}"]],
        depends_on: ["create"])
    static let request: JSONValue = ["title": "T", "start": "s"]
    /// A command step, then a local step reading its output.
    let run = RunScenario(flow([create, shape]))
    let createRunning = Run.started("create", request: request)

    @Test func advanceStartsAReadyCommandStepAndWaitsUntilItsDeadline() {
        run.when(.advance).then([
            .append(createRunning),
            Run.execute(.step("create"), action: "calendar.schedule_event", request: Self.request),
            .wakeUp(at: Run.at(60)),
        ])
    }

    @Test func advanceWhileAStepRunsOnlyWaitsForItsDeadline() {
        run.given(createRunning).when(.advance, at: Run.at(10)).then([.wakeUp(at: Run.at(60))])
    }

    @Test func anAnswerRecordsTheAttemptsSuccessWithItsSource() {
        run.given(createRunning)
            .when(.recordResult(.step("create"), attempt: 1, result: .success(["event_id": "e-9"]), sourceSequence: 7))
            .then([.append(Run.succeeded("create", output: ["event_id": "e-9"], source: 7))])
    }

    @Test func aLateDuplicateOrStaleAnswerChangesNothing() {
        let answered = run.given(createRunning, Run.succeeded("create", output: ["event_id": "e-9"]))
        answered.when(.recordResult(.step("create"), attempt: 1, result: .success([:]), sourceSequence: 9)).then([])
        run.given(createRunning).when(
            .recordResult(.step("create"), attempt: 2, result: .success([:]), sourceSequence: nil)
        ).then([])
        run.given(createRunning).when(
            .recordResult(.step("nope"), attempt: 1, result: .success([:]), sourceSequence: nil)
        ).then([])
        run.given(createRunning)
            .when(.recordResult(.compensation(of: "create"), attempt: 1, result: .success([:]), sourceSequence: nil))
            .then([])
    }

    @Test func aLocalStepRunsInsideTheDecision() {
        run.given(createRunning, Run.succeeded("create", output: ["event_id": "e-9"]))
            .when(.advance)
            .then([.append(Run.succeeded("shape", output: ["id": "e-9"]))])
    }

    @Test func aRunWithEveryStepDonePublishesItsOutputThenSucceeds() {
        let output: JSONValue = ["text": "done e-9"]
        let done = run.given(
            createRunning, Run.succeeded("create", output: ["event_id": "e-9"]),
            Run.succeeded("shape", output: ["id": "e-9"]))
        let finished = done.when(.advance).then([
            .publishOutput(
                FlowOutputProduced(
                    run_id: "r", flow_id: "f", flow_version: 1, message_id: "m", channel: nil, text: "done e-9",
                    data: output)),
            .append(.runSucceeded(FlowRunSucceeded(output: output))),
        ])
        #expect(finished.state.phase == .succeeded)
        #expect(finished.state.status == .succeeded)
    }

    @Test func aDryRunSimulatesCommandStepsAndPublishesNothing() {
        let dry = RunScenario(
            Self.flow(
                [StepDefinition(id: "create", action: "calendar.schedule_event", with: ["title": "x", "start": "s"])],
                output: ["text": "ok"]), mode: .dry)
        dry.when(.advance)
            .then([
                .append(
                    Run.succeeded(
                        "create",
                        output: ["title": "x", "start": "s", "simulated": true, "action": "calendar.schedule_event"]))
            ])
            .when(.advance)
            .then([.append(.runSucceeded(FlowRunSucceeded(output: ["text": "ok"])))])
    }

    @Test func aRetryableFailureSchedulesTheNextAttempt() {
        run.given(createRunning)
            .when(.recordResult(.step("create"), attempt: 1, result: .failure(Run.busy), sourceSequence: nil))
            .then([.append(Run.failed("create", 1, Run.busy, retryAt: Run.at(1))), .wakeUp(at: Run.at(1))])
    }

    @Test func aQueuedRetryWaitsForItsTimeThenStartsTheNextAttemptWithTheSameKey() {
        let queued = run.given(createRunning, Run.failed("create", 1, Run.busy, retryAt: Run.at(1)))
        #expect(queued.state.step("create")?.status == .queued)
        queued.when(.advance, at: Run.at(0.5)).then([.wakeUp(at: Run.at(1))])
        queued.when(.advance, at: Run.at(1)).then([
            .append(Run.started("create", 2, request: Self.request, at: Run.at(1))),
            Run.execute(.step("create"), 2, action: "calendar.schedule_event", request: Self.request, at: Run.at(1)),
            .wakeUp(at: Run.at(61)),
        ])
    }

    @Test func aNonRetryableFailureIsFinal() {
        run.given(createRunning)
            .when(.recordResult(.step("create"), attempt: 1, result: .failure(Run.denied), sourceSequence: nil))
            .then([.append(Run.failed("create", 1, Run.denied))])
    }

    @Test func aRetryableFailureOfTheLastAllowedAttemptIsFinal() {
        run.given(Run.started("create", 3, request: Self.request))
            .when(.recordResult(.step("create"), attempt: 3, result: .failure(Run.busy), sourceSequence: nil))
            .then([.append(Run.failed("create", 3, Run.busy))])
    }

    @Test func aNonRetryableKindOfThePolicyIsNotRetried() {
        var definition = Self.flow([Self.create])
        definition.defaults?.retry?.non_retryable = [StepErrorKind("busy")]
        RunScenario(definition).given(createRunning)
            .when(.recordResult(.step("create"), attempt: 1, result: .failure(Run.busy), sourceSequence: nil))
            .then([.append(Run.failed("create", 1, Run.busy))])
    }

    @Test func aStepFailedForGoodWithNothingToUndoFailsTheRun() {
        let failed = run.given(createRunning, Run.failed("create", 1, Run.denied)).when(.advance).then([
            .append(
                .runFailed(
                    FlowRunFailed(
                        error: RunError(
                            code: "denied", message: "step create failed after 1 attempt(s): no", step_id: "create"))))
        ])
        #expect(failed.state.phase == .failed)
    }

    @Test func aLateStepTimesOutAndIsRetried() {
        var late = Self.create
        late.timeout_sec = 5
        let timeout = StepError(kind: .timeout, message: "no answer within 5s", retryable: true)
        RunScenario(Self.flow([late])).given(createRunning)
            .when(.advance, at: Run.at(6))
            .then([
                .append(Run.failed("create", 1, timeout, finished: Run.at(6), retryAt: Run.at(7))),
                .wakeUp(at: Run.at(7)),
            ])
    }

    @Test func aFalseConditionSkipsTheStepAndSkippingPropagates() {
        let definition = Self.flow(
            [
                StepDefinition(id: "gate", action: "transform", with: ["value": 1], when: "{{trigger.entities.go}}"),
                StepDefinition(id: "after", action: "transform", with: ["value": 2], depends_on: ["gate"]),
                StepDefinition(id: "other", action: "transform", with: ["value": 3]),
            ], output: ["text": "ok"])
        let done = RunScenario(definition).when(.advance)
            .then([
                .append(
                    .stepSkipped(StepSkipped(step_id: "gate", reason: "condition {{trigger.entities.go}} is false"))),
                .append(Run.succeeded("other", output: 3)),
            ])
            .when(.advance)
            .then([.append(.stepSkipped(StepSkipped(step_id: "after", reason: "every step it depends on was skipped")))]
            )
            .when(.advance)
            .then([
                .publishOutput(
                    FlowOutputProduced(
                        run_id: "r", flow_id: "f", flow_version: 1, message_id: "m", channel: nil, text: "ok",
                        data: ["text": "ok"])),
                .append(.runSucceeded(FlowRunSucceeded(output: ["text": "ok"]))),
            ])
        #expect(done.state.step("after")?.status == .skipped)
    }

    @Test func aRequestThatCannotRenderFailsTheAttemptForGood() {
        let broken = StepDefinition(
            id: "create", action: "calendar.schedule_event", with: ["title": "{{steps.create", "start": "s"])
        let actions = RunScenario(Self.flow([broken])).when(.advance).actions
        guard case .append(.stepAttemptFailed(let failed))? = actions.first, actions.count == 1 else {
            Issue.record("expected one StepAttemptFailed, got \(actions)")
            return
        }
        #expect(failed.error.kind == .template && !failed.error.retryable && failed.retry_at == nil)
    }

    @Test func runAsServiceActsWithTheEnginesOwnCredentials() {
        var definition = Self.flow([Self.create])
        definition.run_as = .service
        let actions = RunScenario(definition).when(.advance).actions
        guard case .execute(let execution)? = actions.dropFirst().first else {
            Issue.record("no execution in \(actions)")
            return
        }
        #expect(execution.onBehalfOf == ["service": "ledgerflow"])
    }

    @Test func cancelWhileRunningRequestsTheCancel() {
        run.given(createRunning).when(.cancel(actor: "ops", reason: "changed my mind"))
            .then([.append(.runCancelRequested(FlowRunCancelRequested(actor: "ops", reason: "changed my mind")))])
    }

    @Test func redriveOfAnUnfinishedRunIsRefused() {
        run.given(createRunning).when(.redrive(actor: "ops", fromStep: nil))
            .then([.refuse("run r is RUNNING; only FAILED runs can be redriven")])
    }

    @Test func theRunDeadlineIsAWakeUpThenFailsTheRun() {
        var definition = Self.flow([Self.create])
        definition.run_timeout_sec = 10
        let running = RunScenario(definition).when(.advance).then([
            .wakeUp(at: Run.at(10)),
            .append(createRunning),
            Run.execute(.step("create"), action: "calendar.schedule_event", request: Self.request),
            .wakeUp(at: Run.at(60)),
        ])
        running.when(.advance, at: Run.at(11))
            .then([
                .append(
                    .runFailed(
                        FlowRunFailed(
                            error: RunError(code: "run_timeout", message: "the run did not finish within 10s"))))
            ])
    }

    @Test func attemptTargetsKeepTheirWireNames() {
        #expect(AttemptTarget.step("a").wireID == "a")
        #expect(AttemptTarget.compensation(of: "a").wireID == "a~compensate")
        #expect(AttemptTarget(wireID: "a~compensate") == .compensation(of: "a"))
        #expect(AttemptTarget(wireID: "a") == .step("a"))
        #expect(RunDecider.commandID(runID: "r", target: .compensation(of: "a"), attempt: 2) == "r/a~compensate/2")
        let parsed = RunDecider.parseCommandID("r/a~compensate/2")
        #expect(parsed?.runID == "r" && parsed?.target == .compensation(of: "a") && parsed?.attempt == 2)
        #expect(RunDecider.parseCommandID("r/a") == nil)
        #expect(RunDecider.idempotencyKey(runID: "r", target: .step("a"), generation: 1) == "r/a/g1")
    }
}
