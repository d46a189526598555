import Foundation
import LedgerCore
import Logging

/// Webhook deliveries of runs' final outputs (`output.webhook`): the `FlowOutputProduced` exactly as the log stores
/// it, `POST`ed through the `http.request` client and its outbound policy (checked addresses, no redirects followed,
/// bounded answers, a deadline), with `Content-Type: application/cloudevents+json`, the delivery's
/// `Idempotency-Key` and a `Ledgerflow-Signature` made with the secret, which is resolved here and nowhere else.
extension Engine {
    static let cloudEventsContentType = "application/cloudevents+json"

    /// Starts the attempt; its result comes back to the run's mailbox.
    func deliver(_ delivery: WebhookDelivery, _ loop: inout RunLoop) {
        let driver = loop.driver
        loop.executions.removeAll { $0.isCancelled }
        loop.executions.append(
            Task {
                let result = await self.post(delivery)
                if Task.isCancelled { return }
                driver.send(.input(.recordDelivery(attempt: delivery.attempt, result: result), done: nil))
            })
    }

    /// One delivery attempt: the receiver's status (`{"status": <code>}`) or why it failed (whether a retry may help).
    func post(_ delivery: WebhookDelivery) async -> StepResult {
        do {
            return try await executor.http.perform(try await request(for: delivery))
        } catch let error as StepError {
            return .failure(Self.said(of: delivery, error))
        } catch {
            return .failure(
                StepError(kind: .unavailable, message: "POST \(delivery.url) failed: \(error)", retryable: true))
        }
    }

    /// The `http.request` client's error, said of the webhook (what went wrong and what to do about it there).
    static func said(of delivery: WebhookDelivery, _ error: StepError) -> StepError {
        var error = error
        if error.message.hasPrefix("secret ") { return error }
        if error.kind == .outputTooLarge {
            error.message =
                "POST \(delivery.url) answered with more than Ledgerflow reads of an answer: a receiver should answer a "
                + "delivery with a short body (or none); it is not retried"
        } else if let redirects = error.message.range(of: "; redirects are not followed") {
            error.message =
                String(error.message[..<redirects.lowerBound])
                + "; a webhook's redirects are not followed: set output.webhook.url to the final URL"
        }
        error.message = "output.webhook: \(error.message)"
        return error
    }

    /// The attempt as an `http.request` execution: its body the stored output, its headers signed now.
    func request(for delivery: WebhookDelivery) async throws -> StepExecution {
        guard let secret = configuration.secrets.value(delivery.secret) else {
            throw StepError(
                kind: .badRequest,
                message:
                    "secret \(delivery.secret) (output.webhook.secret) is not set: give it in the --secrets file or as "
                    + "\(SecretStore.environmentPrefix)\(delivery.secret.uppercased()), then redrive the run "
                    + "(POST /automation/runs/\(delivery.runID)/redrive)",
                retryable: false)
        }
        let stored: LogMessage?
        do {
            stored = try await ledger.message(at: delivery.outputSequence)
        } catch {
            throw StepError(
                kind: .unavailable,
                message: "could not read the run's output from the log (sequence \(delivery.outputSequence)): \(error)",
                retryable: true)
        }
        guard let stored, stored.subject == Subjects.outputProduced else {
            throw StepError(
                kind: .badRequest,
                message:
                    "the run's output is no longer in the log at sequence \(delivery.outputSequence); nothing can be delivered",
                retryable: false)
        }
        let timestamp = Int64(Date().timeIntervalSince1970)
        return StepExecution(
            runID: delivery.runID, target: .step("output.webhook"), attempt: delivery.attempt, action: "http.request",
            request: [
                "method": "POST", "url": .string(delivery.url),
                "headers": [
                    "Content-Type": .string(Self.cloudEventsContentType),
                    WebhookSignature.header: .string(
                        WebhookSignature.value(secret: secret, timestamp: timestamp, body: stored.payload)),
                ],
                "body": .string(String(decoding: stored.payload, as: UTF8.self)),
            ],
            idempotencyKey: delivery.idempotencyKey, commandID: "\(delivery.runID)/webhook/\(delivery.attempt)",
            deadline: Date().addingTimeInterval(delivery.timeoutSeconds), onBehalfOf: .null)
    }
}
