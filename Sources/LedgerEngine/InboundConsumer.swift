import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging
import Synchronization

/// What became of one inbound message.
enum InboundOutcome: Sendable, Equatable {
    /// Applied (or deliberately ignored): acknowledge it.
    case handled
    /// It can never be handled: record it with the reason, then acknowledge it.
    case refused(String)
    /// Handling failed for a reason that may pass (NATS or LMDB unavailable): deliver it again later.
    case retry(String)
    /// The engine is stopping: neither acknowledge nor record; the message is delivered again after a restart.
    case interrupted
}

/// The inbound consumer and its poison-message policy: every message is acknowledged exactly when it was applied,
/// recorded as refused (with the reason), or given up after `Limits.maxDeliveries` deliveries (recorded too).
/// Nothing a message holds stops the consumer or the messages behind it.
extension Engine {
    func ensureConsumer() async throws -> JetStreamPullSubscription {
        var config = ConsumerConfig()
        config.durable_name = configuration.consumerName
        config.description = "Ledgerflow engine: inbound commands and answers"
        config.ack_policy = "explicit"
        config.ack_wait = configuration.ackWait.components.seconds * 1_000_000_000
        config.max_ack_pending = 20_000
        config.deliver_policy = "all"
        config.max_waiting = 512
        // One delivery beyond the engine's own limit: that one arrives only when every earlier attempt ended
        // without an answer (the process stopped while handling it), and is recorded as given up.
        config.max_deliver = configuration.maxDeliveries + 1
        if ledger.apiLevel >= 1 {
            config.filter_subjects = configuration.inboundSubjects
        }
        return try await ledger.durableConsumer(config)
    }

    func consumeInbound() async throws {
        var subscription: JetStreamPullSubscription?
        var failures = 0
        while !Task.isCancelled {
            do {
                if subscription == nil { subscription = try await ensureConsumer() }
                let messages = try await subscription!.fetch(
                    batch: configuration.fetchBatch, maxWait: .milliseconds(500))
                failures = 0
                if messages.isEmpty { continue }
                let sub = subscription!
                // The whole batch is handled before the next fetch: at most `fetchBatch` messages in memory.
                await withTaskGroup(of: Void.self) { group in
                    for message in messages {
                        group.addTask { await self.handleInbound(message, subscription: sub) }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                let delay = Self.backoff(failures)
                logger.warning(
                    "engine consumer failed; reopening it",
                    metadata: [LogKey.error: "\(error)", LogKey.delay: "\(delay)"])
                subscription = nil
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// 250 ms, 500 ms, 1 s, ... up to 30 s.
    static func backoff(_ attempt: Int) -> Duration {
        let exponent = max(0, min(attempt - 1, 7))
        return min(.milliseconds(250 * (1 << exponent)), .seconds(30))
    }

    func handleInbound(_ message: NATSMessage, subscription: JetStreamPullSubscription) async {
        let meta = message.jetStreamMetadata
        let sequence = meta?.streamSequence ?? 0
        let delivered = Int(clamping: meta?.numDelivered ?? 1)
        let outcome: InboundOutcome
        var refusal = InboundRejectClass.refused
        if let injected = inboundFailpoint.function?(message) {
            outcome = injected
        } else if delivered > configuration.maxDeliveries {
            refusal = .deliveryLimit
            outcome = .refused(
                "delivered \(delivered) times without an answer (the engine stopped each time while handling it); given up"
            )
        } else if !configuration.inboundSubjects.contains(where: {
            subjectMatches(pattern: $0, subject: message.subject)
        }) {
            // On servers without multiple filter subjects the consumer sees every subject; those are not inbound.
            outcome = .handled
        } else {
            outcome = await dispatch(message, sequence: sequence)
        }
        switch outcome {
        case .handled:
            ack(message, subscription)
        case .refused(let reason):
            if await reject(message, sequence: sequence, reason: reason, class: refusal) { ack(message, subscription) }
        case .retry(let reason) where delivered >= configuration.maxDeliveries:
            let recorded = await reject(
                message, sequence: sequence, reason: "given up after \(delivered) deliveries: \(reason)",
                class: .retriesExhausted)
            if recorded { ack(message, subscription) }
        case .retry(let reason):
            inboundRetries.add(1, ordering: .relaxed)
            metrics.retried()
            let delay = Self.backoff(delivered)
            logger.warning(
                "inbound message could not be handled; delivering it again later",
                metadata: [
                    LogKey.sequence: "\(sequence)", LogKey.subject: "\(message.subject)", LogKey.error: "\(reason)",
                    LogKey.delivery: "\(delivered) of \(configuration.maxDeliveries)", LogKey.delay: "\(delay)",
                ])
            do { try subscription.nak(message, delay: delay) } catch {
                logger.warning(
                    "nak failed (the message is redelivered after ack_wait)", metadata: [LogKey.error: "\(error)"])
            }
        case .interrupted:
            break
        }
    }

    /// Decodes the envelope once and hands the event to the handler of its type; a type nobody handles, or an
    /// event its handler cannot read, is refused (and so recorded and logged as a warning).
    func dispatch(_ message: NATSMessage, sequence: UInt64) async -> InboundOutcome {
        // Other services' events may have any type: the flows whose trigger names it take them.
        let isEvent = configuration.eventSubjects.contains { subjectMatches(pattern: $0, subject: message.subject) }
        let event: CloudEvent<JSONValue>
        switch decodeInbound(message.payload, expectedTypes: isEvent ? nil : inboundHandlers.types, codec: EventCodec())
        {
        case .failure(let problem): return .refused(problem.reason)
        case .success(let decoded): event = decoded
        }
        let found: (any InboundHandler)? = isEvent ? FlowEventHandler() : inboundHandlers.handler(for: event.type)
        guard let handler = found else {
            return .refused("no handler for event type \(event.type)")
        }
        if let problem = InboundFields.problem(
            in: event, required: handler.requiredFields, identifiers: handler.identifierFields)
        {
            return .refused(problem)
        }
        return await handler.handle(event, at: sequence, engine: self)
    }

    func ack(_ message: NATSMessage, _ subscription: JetStreamPullSubscription) {
        do { try subscription.ack(message) } catch {
            logger.warning("ack failed (the message will be redelivered)", metadata: [LogKey.error: "\(error)"])
        }
    }

    /// Records a refused inbound message with its reason (the message itself stays in the log at `sequence`).
    /// Returns false when the record could not be written (the message is then not acknowledged).
    @discardableResult
    func reject(
        _ message: NATSMessage, sequence: UInt64, reason: String, class refusal: InboundRejectClass = .refused
    ) async -> Bool {
        messagesRejected.add(1, ordering: .relaxed)
        metrics.rejected(refusal)
        logger.warning(
            "refused an inbound message; recording it",
            metadata: [LogKey.sequence: "\(sequence)", LogKey.subject: "\(message.subject)", LogKey.error: "\(reason)"])
        let body = LedgerEvent.Body.rejected(
            InboundMessageRejected(
                subject: message.subject, sequence: sequence, reason: reason, payload: message.payload))
        do {
            try await ledger.append(
                body, to: .rejected(sequence: sequence), expectedLastSequence: 0, id: "rejected-\(sequence)")
            return true
        } catch let error as NATSError where error.isWrongLastSequence {
            return true  // recorded before (an earlier delivery, or another engine)
        } catch is CancellationError {
            return false
        } catch {
            logger.error(
                "could not record the refusal of an inbound message",
                metadata: [LogKey.sequence: "\(sequence)", LogKey.error: "\(error)"])
            return false
        }
    }
}
