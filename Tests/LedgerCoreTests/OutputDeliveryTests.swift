import Foundation
import LedgerCore
import Testing

/// HMAC-SHA256 against RFC 4231, the webhook signature, and the decider's acknowledgement and webhook delivery:
/// given(events) / when(command) / then(actions).
@Suite struct OutputDeliveryTests {
    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            out.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return out
    }

    /// RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 truncates its output).
    @Test(arguments: [
        (
            [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        ),
        (
            Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ),
        (
            [UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        ),
        (
            bytes(hex: "0102030405060708090a0b0c0d0e0f10111213141516171819"), [UInt8](repeating: 0xcd, count: 50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
        ),
        (
            [UInt8](repeating: 0xaa, count: 131),
            Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        ),
        (
            [UInt8](repeating: 0xaa, count: 131),
            Array(
                "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                    .utf8),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        ),
    ])
    func hmacMatchesRFC4231(key: [UInt8], message: [UInt8], expected: String) {
        #expect(SHA256.hexDigits(HMACSHA256.authenticationCode(key: key, message: message)) == expected)
    }

    @Test func aSignatureVerifiesOnlyForItsBodySecretAndTime() {
        let body = Array(#"{"type":"FlowOutputProduced"}"#.utf8)
        let header = WebhookSignature.value(secret: "k", timestamp: 1_795_000_000, body: body)
        let code = SHA256.hexDigits(
            HMACSHA256.authenticationCode(key: Array("k".utf8), message: Array("1795000000.".utf8) + body))
        #expect(header == "t=1795000000,v1=\(code)")
        #expect(WebhookSignature.verify(header, secret: "k", body: body, now: 1_795_000_100))
        #expect(!WebhookSignature.verify(header, secret: "other", body: body, now: 1_795_000_100))
        #expect(!WebhookSignature.verify(header, secret: "k", body: body + [0x20], now: 1_795_000_100))
        #expect(!WebhookSignature.verify(header, secret: "k", body: body, now: 1_795_001_000), "too old")
        #expect(!WebhookSignature.verify("v1=\(code)", secret: "k", body: body, now: 1_795_000_000))
    }

    // MARK: - The decider

    static let url = "https://hooks.example.com/in"
    static let output: JSONValue = [
        "text": "Listo: {{steps.s.output}}", "ack": "Estoy en ello, {{trigger.user.id}}",
        "webhook": [
            "url": .string(url), "secret": "{{secrets.hook}}",
            "retry": ["max_attempts": 3, "initial_ms": 1000, "max_ms": 10_000, "jitter": false],
        ],
    ]
    static let flow = FlowDefinition(
        id: "f", trigger: FlowTrigger(event: "AssistantCommandIssued", intent: "x"),
        steps: [StepDefinition(id: "s", action: "transform", with: ["value": "hecho"])], output: output)
    static let done: [LedgerEvent.Body] = [
        .runAcknowledged(FlowRunAcknowledged(text: "Estoy en ello, u")),
        Run.started("s", request: ["value": "hecho"], remote: false),
        Run.succeeded("s", output: "hecho"),
    ]
    static let final = FlowOutputProduced(
        run_id: "r", flow_id: "f", flow_version: 1, message_id: "m", channel: nil, text: "Listo: hecho",
        data: ["text": "Listo: hecho"], kind: .final)
    static let finalOutput: JSONValue = ["text": "Listo: hecho"]
    static let busy = StepError(kind: .http(503), message: "POST answered 503", retryable: true)
    static let gone = StepError(kind: .http(410), message: "POST answered 410", retryable: false)

    /// The run succeeded with its output stored at some sequence; returns it and that sequence.
    static func succeeded(mode: RunMode = .live) -> (RunScenario, UInt64) {
        let run = RunScenario(flow, mode: mode).given(done)
            .given(.runSucceeded(FlowRunSucceeded(output: finalOutput, webhook: url)), .outputPublished)
        return (run, run.state.output_sequence ?? 0)
    }

    static func started(_ attempt: Int, sequence: UInt64, at: Date = Run.t0) -> LedgerEvent.Body {
        .deliveryStarted(
            WebhookDeliveryAttempt(
                attempt: attempt, url: url, idempotency_key: "r/webhook", output_sequence: sequence,
                started_at: Run.text(at)))
    }

    static func deliver(_ attempt: Int, sequence: UInt64) -> RunAction {
        .deliver(
            WebhookDelivery(
                runID: "r", attempt: attempt, url: url, idempotencyKey: "r/webhook", outputSequence: sequence,
                secret: "hook", timeoutSeconds: 10))
    }

    static func failed(
        _ attempt: Int, sequence: UInt64, _ error: StepError, status: Int?, at: Date, retryAt: Date?,
        startedAt: Date = Run.t0
    ) -> LedgerEvent.Body {
        .deliveryFailed(
            WebhookDeliveryAttempt(
                attempt: attempt, url: url, idempotency_key: "r/webhook", output_sequence: sequence,
                started_at: Run.text(startedAt), finished_at: Run.text(at), http_status: status, error: error,
                retry_at: retryAt.map(Run.text)))
    }

    @Test func theAcknowledgementIsSentAndRecordedBeforeAnyStepStarts() {
        let acked = RunScenario(Self.flow).when(.advance).then([
            .publishOutput(
                FlowOutputProduced(
                    run_id: "r", flow_id: "f", flow_version: 1, message_id: "m", channel: nil,
                    text: "Estoy en ello, u", data: nil, kind: .ack)),
            .append(.runAcknowledged(FlowRunAcknowledged(text: "Estoy en ello, u"))),
        ])
        #expect(acked.state.ack?.text == "Estoy en ello, u")
        #expect(acked.state.output == nil, "the run's output stays the final one")
        // Recorded once: the next decision runs the (local) step.
        acked.when(.advance).then([.append(Run.succeeded("s", output: "hecho"))])
        // A dry run records it, marked dry with the rest of the run, and sends nothing.
        RunScenario(Self.flow, mode: .dry).when(.advance).then([
            .append(.runAcknowledged(FlowRunAcknowledged(text: "Estoy en ello, u")))
        ])
    }

    @Test func theFinalOutputNamesTheWebhookAndTheDeliveryWaitsForTheStoredOutput() {
        let done = RunScenario(Self.flow).given(Self.done)
        let succeeded = done.when(.advance).then([
            .publishOutput(Self.final),
            .append(.runSucceeded(FlowRunSucceeded(output: Self.finalOutput, webhook: Self.url))),
        ])
        #expect(succeeded.state.status == .succeeded)
        #expect(succeeded.state.delivery?.status == .queued)
        #expect(!succeeded.state.isSettled, "a succeeded run still delivers its output")
        // Its output is not known to be in the log: published (again, deduplicated) before anything is posted.
        succeeded.when(.advance).then([.publishOutput(Self.final)])
        // A dry run delivers nothing.
        let dry = RunScenario(Self.flow, mode: .dry).given(Self.done).when(.advance).then([
            .append(.runSucceeded(FlowRunSucceeded(output: Self.finalOutput, webhook: nil)))
        ])
        #expect(dry.state.isSettled)
    }

    @Test func aFailedAttemptIsRetriedWithBackoffThenDeliveredWithTheSameKey() {
        let (run, sequence) = Self.succeeded()
        let first = run.when(.advance).then([
            .append(Self.started(1, sequence: sequence)), Self.deliver(1, sequence: sequence),
            .wakeUp(at: Run.at(10)),
        ])
        let waiting = first.when(.recordDelivery(attempt: 1, result: .failure(Self.busy)), at: Run.at(1)).then([
            .append(Self.failed(1, sequence: sequence, Self.busy, status: 503, at: Run.at(1), retryAt: Run.at(2))),
            .wakeUp(at: Run.at(2)),
        ])
        #expect(waiting.state.delivery?.status == .queued)
        waiting.when(.advance, at: Run.at(1.5)).then([.wakeUp(at: Run.at(2))])
        let second = waiting.when(.advance, at: Run.at(2)).then([
            .append(Self.started(2, sequence: sequence, at: Run.at(2))), Self.deliver(2, sequence: sequence),
            .wakeUp(at: Run.at(12)),
        ])
        // A stale answer (attempt 1) changes nothing.
        second.when(.recordDelivery(attempt: 1, result: .success(["status": 200]))).then([])
        let delivered = second.when(.recordDelivery(attempt: 2, result: .success(["status": 204])), at: Run.at(3))
            .then([
                .append(
                    .deliverySucceeded(
                        WebhookDeliveryAttempt(
                            attempt: 2, url: Self.url, idempotency_key: "r/webhook", output_sequence: sequence,
                            started_at: Run.text(Run.at(2)), finished_at: Run.text(Run.at(3)), http_status: 204)))
            ])
        #expect(delivered.state.delivery?.status == .succeeded)
        #expect(delivered.state.delivery?.attempts.map(\.http_status) == [503, 204])
        #expect(delivered.state.isSettled)
        delivered.when(.advance, at: Run.at(100)).then([])
    }

    @Test func aLateAttemptTimesOut() {
        let (run, sequence) = Self.succeeded()
        let running = run.given(Self.started(1, sequence: sequence))
        running.when(.advance, at: Run.at(5)).then([.wakeUp(at: Run.at(10))])
        let timeout = StepError(kind: .timeout, message: "POST \(Self.url) did not answer within 10s", retryable: true)
        running.when(.advance, at: Run.at(10)).then([
            .append(Self.failed(1, sequence: sequence, timeout, status: nil, at: Run.at(10), retryAt: Run.at(11))),
            .wakeUp(at: Run.at(11)),
        ])
    }

    @Test func aFinalRefusalOrExhaustedAttemptsAreADeadLetterThatARedriveTriesAgain() {
        let (run, sequence) = Self.succeeded()
        // 410 is final at once.
        let refused = run.given(Self.started(1, sequence: sequence))
            .when(.recordDelivery(attempt: 1, result: .failure(Self.gone)), at: Run.at(1))
            .then([.append(Self.failed(1, sequence: sequence, Self.gone, status: 410, at: Run.at(1), retryAt: nil))])
        #expect(refused.state.delivery?.isDeadLetter == true)
        #expect(refused.state.isSettled)
        #expect(refused.state.status == .succeeded, "the run's own work succeeded")
        refused.when(.advance, at: Run.at(100)).then([])
        // Three retryable failures exhaust `max_attempts: 3`.
        let exhausted = run.given(
            Self.started(1, sequence: sequence),
            Self.failed(1, sequence: sequence, Self.busy, status: 503, at: Run.t0, retryAt: Run.t0),
            Self.started(2, sequence: sequence),
            Self.failed(2, sequence: sequence, Self.busy, status: 503, at: Run.t0, retryAt: Run.t0),
            Self.started(3, sequence: sequence)
        ).when(.recordDelivery(attempt: 3, result: .failure(Self.busy)), at: Run.at(1))
            .then([.append(Self.failed(3, sequence: sequence, Self.busy, status: 503, at: Run.at(1), retryAt: nil))])
        #expect(exhausted.state.delivery?.isDeadLetter == true)
        // A redrive names no step; it records who, and the next attempt keeps the key with a fresh budget.
        exhausted.when(.redrive(actor: "ops", fromStep: "s")).then([
            .refuse("run r SUCCEEDED; only its dead-lettered webhook delivery can be redriven: leave from_step out")
        ])
        let redriven = exhausted.when(.redrive(actor: "ops", fromStep: nil, actorType: "operator")).then([
            .append(.deliveryRedriven(WebhookDeliveryRedriven(actor: "ops", actor_type: "operator")))
        ])
        #expect(redriven.state.delivery?.status == .queued)
        #expect(!redriven.state.isSettled)
        let fourth = redriven.when(.advance, at: Run.at(5)).then([
            .append(Self.started(4, sequence: sequence, at: Run.at(5))), Self.deliver(4, sequence: sequence),
            .wakeUp(at: Run.at(15)),
        ])
        fourth.when(.recordDelivery(attempt: 4, result: .failure(Self.busy)), at: Run.at(6)).then([
            .append(
                Self.failed(
                    4, sequence: sequence, Self.busy, status: 503, at: Run.at(6), retryAt: Run.at(7),
                    startedAt: Run.at(5))),
            .wakeUp(at: Run.at(7)),
        ])
        // A delivered (or never dead-lettered) run is not redriven.
        run.when(.redrive(actor: "ops", fromStep: nil)).then([
            .refuse("run r is SUCCEEDED; only FAILED runs can be redriven")
        ])
    }

    @Test func aDeliveryInFlightIsSentAgainAfterATakeover() {
        let (run, sequence) = Self.succeeded()
        #expect(run.decider.deliveryInFlight(run.state) == nil)
        let running = run.given(Self.started(1, sequence: sequence))
        guard case .deliver(let expected) = Self.deliver(1, sequence: sequence) else { return }
        #expect(running.decider.deliveryInFlight(running.state) == expected)
    }

    // MARK: - The events

    @Test(arguments: [
        LedgerEvent.Body.runAcknowledged(FlowRunAcknowledged(text: "Estoy en ello")),
        .runAcknowledged(FlowRunAcknowledged(text: nil, error: "{{x}} has no value in this run")),
        started(1, sequence: 9),
        failed(1, sequence: 9, busy, status: 503, at: Run.at(1), retryAt: Run.at(2)),
        .deliverySucceeded(
            WebhookDeliveryAttempt(
                attempt: 2, url: url, idempotency_key: "r/webhook", output_sequence: 9, started_at: "t",
                finished_at: "u", http_status: 200)),
        .deliveryRedriven(WebhookDeliveryRedriven(actor: "ops", actor_type: "operator")),
        .runSucceeded(FlowRunSucceeded(output: ["text": "x"], webhook: url)),
    ])
    func theNewEventsAreReadBackAsWritten(body: LedgerEvent.Body) throws {
        let bytes = try body.encode(
            id: "e", time: "t", runid: "r", flowid: "f", flowversion: 1, codec: EventCodec())
        let event = try JSONTree.decode(LedgerEvent.self, from: bytes)
        #expect(event.body == body)
        #expect(event.type == body.type)
        #expect(EventSchema.currentVersion(of: body.type) == 1)
    }

    @Test func outputsAndSuccessesWrittenBeforeWebhooksReadAsBefore() throws {
        let succeeded = try JSONTree.decode(
            LedgerEvent.self,
            from: Array(#"{"id":"e","type":"FlowRunSucceeded","time":"t","data":{"output":{"text":"x"}}}"#.utf8))
        #expect(succeeded.body == .runSucceeded(FlowRunSucceeded(output: ["text": "x"])))
        let output = try JSONDecoder().decode(
            FlowOutputProduced.self,
            from: Data(#"{"run_id":"r","flow_id":"f","flow_version":1,"text":"x"}"#.utf8))
        #expect(output.kind == nil, "an output recorded before acknowledgements existed is a final one")
    }

    // MARK: - Registration

    static func problems(_ output: JSONValue) -> [ValidationProblem] {
        let definition: JSONValue = [
            "id": "f", "trigger": ["manual": true], "inputs": ["title": ["type": "string"]],
            "steps": [["id": "s", "action": "transform", "with": ["value": 1]]], "output": output,
        ]
        switch FlowValidator.validate(definition) {
        case .success: return []
        case .failure(let failure): return failure.problems
        }
    }

    @Test func ackAndWebhookAreCheckedAtRegistration() {
        let hook: JSONValue = ["url": "https://hooks.example.com/in", "secret": "{{secrets.hook}}"]
        #expect(Self.problems(["text": "ok", "ack": "En ello: {{input.title}}", "webhook": hook]) == [])
        #expect(Self.problems(["ack": 5]).map(\.path) == ["output.ack"])
        #expect(Self.problems(["ack": "{{input.title"]).map(\.path) == ["output.ack"])
        #expect(Self.problems(["ack": "{{steps.s.output}}"]).map(\.path) == ["output.ack"])
        #expect(Self.problems(["ack": "{{input.nope}}"]).map(\.path) == ["output.ack"])
        #expect(Self.problems(["ack": "{{secrets.hook}}"]).map(\.path) == ["output.ack"])
        #expect(Self.problems(["webhook": "https://x"]).map(\.path) == ["output.webhook"])
        #expect(
            Self.problems(["webhook": ["url": "ftp://hooks.example.com/", "secret": "{{secrets.hook}}"]]).map(\.path)
                == ["output.webhook.url"])
        #expect(
            Self.problems(["webhook": ["url": "https://{{input.title}}/", "secret": "{{secrets.hook}}"]]).map(\.path)
                == ["output.webhook.url"])
        let huge = "https://hooks.example.com/" + String(repeating: "a", count: 5000)
        #expect(
            Self.problems(["webhook": ["url": .string(huge), "secret": "{{secrets.hook}}"]]).map(\.path)
                == ["output.webhook.url"])
        #expect(Self.problems(["webhook": ["url": "https://h.example.com/"]]).map(\.path) == ["output.webhook.secret"])
        #expect(
            Self.problems(["webhook": ["url": "https://h.example.com/", "secret": "plain"]]).map(\.path)
                == ["output.webhook.secret"])
        #expect(
            Self.problems([
                "webhook": [
                    "url": "https://h.example.com/", "secret": "{{secrets.hook}}", "retry": ["max_attempts": 0],
                    "timeout_sec": 1000, "extra": true,
                ]
            ]).map(\.path).sorted()
                == ["output.webhook.extra", "output.webhook.retry.max_attempts", "output.webhook.timeout_sec"])
    }
}
