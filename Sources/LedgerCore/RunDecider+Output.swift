import Foundation

/// The run's outputs: the immediate acknowledgement at its start, the final output at its end, and the webhook
/// delivery of the final output after it succeeded (retried, dead-lettered, redriven).
extension RunDecider {
    /// The flow's `output`, read into its parts.
    var outputSpec: FlowOutputSpec { FlowOutputSpec(definition.output) }

    /// The `Idempotency-Key` of the run's webhook delivery: the same on every attempt and every redrive.
    public static func deliveryKey(runID: String) -> String { "\(runID)/webhook" }

    /// The acknowledgement, when the flow declares one and the run has not recorded it: sent (live runs) and then
    /// recorded, so a crash in between sends it again (deduplicated by its id) rather than losing it.
    func acknowledge(_ state: RunState, context: RunScope) -> [RunAction]? {
        guard state.ack == nil, let template = outputSpec.ack else { return nil }
        let text: String
        do {
            let rendered = try Template.render(.string(template), context: context, at: "output.ack")
            text = rendered.stringValue ?? rendered.interpolated
        } catch {
            return [.append(.runAcknowledged(FlowRunAcknowledged(text: nil, error: "\(error)")))]
        }
        var actions: [RunAction] = []
        if state.mode == .live {
            actions.append(
                .publishOutput(
                    FlowOutputProduced(
                        run_id: state.run_id, flow_id: state.flow_id, flow_version: state.flow_version,
                        message_id: state.message_id, channel: state.channel, text: text, data: nil, kind: .ack)))
        }
        actions.append(.append(.runAcknowledged(FlowRunAcknowledged(text: text))))
        return actions
    }

    /// The final `FlowOutputProduced` of a run whose rendered output is `output`.
    static func finalOutput(_ state: RunState, _ output: JSONValue) -> FlowOutputProduced {
        FlowOutputProduced(
            run_id: state.run_id, flow_id: state.flow_id, flow_version: state.flow_version,
            message_id: state.message_id, channel: state.channel, text: output["text"]?.stringValue,
            data: output["data"] ?? output, kind: .final)
    }

    func deliveryPolicy(_ webhook: WebhookSpec) -> RetryPolicy { webhook.retry ?? WebhookSpec.defaultRetry }

    /// What the delivery needs now: time out a late attempt, wait for a retry, or start the next attempt.
    func deliverOutput(_ state: RunState, now: Date, random: () -> Double) -> [RunAction] {
        guard state.mode == .live, let delivery = state.delivery, let webhook = outputSpec.webhook else { return [] }
        switch delivery.status {
        case .running:
            guard let last = delivery.attempts.last, let started = Timestamp.parse(last.started_at) else { return [] }
            let deadline = started.addingTimeInterval(webhook.timeoutSeconds)
            guard deadline <= now else { return [.wakeUp(at: deadline)] }
            let error = StepError(
                kind: .timeout,
                message: "POST \(delivery.url) did not answer within \(Int(webhook.timeoutSeconds.rounded()))s",
                retryable: true)
            return deliveryFailure(state, attempt: last.attempt, error: error, now: now, random: random)
        case .queued:
            if let text = delivery.attempts.last?.retry_at, let retryAt = Timestamp.parse(text), retryAt > now {
                return [.wakeUp(at: retryAt)]
            }
            guard let sequence = delivery.output_sequence ?? state.output_sequence else {
                // The output is not known to be in the log (its publish failed): publish it first (its id makes a
                // repeat a duplicate), then deliver what was stored.
                guard let output = state.output else { return [] }
                return [.publishOutput(Self.finalOutput(state, output))]
            }
            let attempt = (delivery.attempts.last?.attempt ?? 0) + 1
            let key = Self.deliveryKey(runID: state.run_id)
            let started = WebhookDeliveryAttempt(
                attempt: attempt, url: delivery.url, idempotency_key: key, output_sequence: sequence,
                started_at: Timestamp.format(now))
            return [
                .append(.deliveryStarted(started)),
                .deliver(
                    WebhookDelivery(
                        runID: state.run_id, attempt: attempt, url: delivery.url, idempotencyKey: key,
                        outputSequence: sequence, secret: webhook.secret, timeoutSeconds: webhook.timeoutSeconds)),
                .wakeUp(at: now.addingTimeInterval(webhook.timeoutSeconds)),
            ]
        default:
            return []
        }
    }

    /// The webhook's answer to attempt `attempt`; an answer to an attempt that is no longer running changes nothing.
    func recordDelivery(
        _ state: RunState, attempt: Int, result: StepResult, now: Date, random: () -> Double
    ) -> [RunAction] {
        guard let delivery = state.delivery, delivery.status == .running, let last = delivery.attempts.last,
            last.attempt == attempt, let sequence = delivery.output_sequence
        else { return [] }
        switch result {
        case .success(let answer):
            return [
                .append(
                    .deliverySucceeded(
                        WebhookDeliveryAttempt(
                            attempt: attempt, url: delivery.url,
                            idempotency_key: delivery.idempotency_key ?? Self.deliveryKey(runID: state.run_id),
                            output_sequence: sequence, started_at: last.started_at, finished_at: Timestamp.format(now),
                            http_status: answer["status"]?.numberValue?.exactInt(in: 100...599))))
            ]
        case .failure(let error):
            return deliveryFailure(state, attempt: attempt, error: error, now: now, random: random)
        }
    }

    /// A failed attempt: retried under the webhook's policy (counting from the last redrive), else a dead letter.
    func deliveryFailure(
        _ state: RunState, attempt: Int, error: StepError, now: Date, random: () -> Double
    ) -> [RunAction] {
        guard let delivery = state.delivery, let webhook = outputSpec.webhook,
            let last = delivery.attempts.last(where: { $0.attempt == attempt })
        else { return [] }
        let round = attempt - delivery.round_start + 1
        let retryAt = retryAt(deliveryPolicy(webhook), error: error, attempt: round, now: now, random: random)
        let status = error.kind.rawValue.hasPrefix("http_") ? Int(error.kind.rawValue.dropFirst(5)) : nil
        let failed = WebhookDeliveryAttempt(
            attempt: attempt, url: delivery.url,
            idempotency_key: delivery.idempotency_key ?? Self.deliveryKey(runID: state.run_id),
            output_sequence: delivery.output_sequence ?? 0, started_at: last.started_at,
            finished_at: Timestamp.format(now), http_status: status, error: error,
            retry_at: retryAt.map(Timestamp.format))
        var actions: [RunAction] = [.append(.deliveryFailed(failed))]
        if let retryAt { actions.append(.wakeUp(at: retryAt)) }
        return actions
    }

    /// A redrive of a succeeded run: only its dead-lettered delivery can be redriven.
    func redriveDelivery(_ state: RunState, actor: String, fromStep: String?, actorType: String?) -> [RunAction] {
        guard state.delivery?.isDeadLetter == true else {
            return [.refuse("run \(state.run_id) is \(state.status.rawValue); only FAILED runs can be redriven")]
        }
        if fromStep != nil {
            return [
                .refuse(
                    "run \(state.run_id) SUCCEEDED; only its dead-lettered webhook delivery can be redriven: leave from_step out"
                )
            ]
        }
        return [.append(.deliveryRedriven(WebhookDeliveryRedriven(actor: actor, actor_type: actorType)))]
    }

    /// The delivery attempt that was running when the run was taken over: sent again, with the same key.
    public func deliveryInFlight(_ state: RunState) -> WebhookDelivery? {
        guard state.mode == .live, let delivery = state.delivery, delivery.status == .running,
            let last = delivery.attempts.last, let sequence = delivery.output_sequence,
            let webhook = outputSpec.webhook
        else { return nil }
        return WebhookDelivery(
            runID: state.run_id, attempt: last.attempt, url: delivery.url,
            idempotencyKey: delivery.idempotency_key ?? Self.deliveryKey(runID: state.run_id),
            outputSequence: sequence, secret: webhook.secret, timeoutSeconds: webhook.timeoutSeconds)
    }
}
