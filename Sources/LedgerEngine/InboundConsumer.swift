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

/// The engine's two durable consumers of inbound subjects.
enum InboundKind: Sendable {
    /// Chat commands and other services' events: each may start runs, so they are fetched only while this worker
    /// has room for more runs (`EngineConfiguration.maxRunsInFlight`); the rest wait in the stream.
    case triggers
    /// Services' answers to the commands steps sent: always fetched, so the runs waiting for them can finish (were
    /// they behind the triggers, a worker at its limit would wait on answers it no longer reads).
    case answers
}

/// The inbound consumers and their poison-message policy: every message is acknowledged exactly when it was
/// applied, recorded as refused (with the reason), or given up after `Limits.maxDeliveries` deliveries (recorded
/// too). Nothing a message holds stops its consumer or the messages behind it.
extension Engine {
    func consumerName(_ kind: InboundKind) -> String {
        kind == .triggers ? configuration.consumerName : configuration.answersConsumerName
    }

    func subjects(_ kind: InboundKind) -> [String] {
        kind == .triggers ? configuration.triggerSubjects : Subjects.engineAnswers
    }

    func consumerConfig(_ kind: InboundKind) -> ConsumerConfig {
        var config = ConsumerConfig()
        config.durable_name = consumerName(kind)
        config.description =
            kind == .triggers
            ? "Ledgerflow engine: inbound commands and events that start runs"
            : "Ledgerflow engine: services' answers to the commands of runs' steps"
        config.ack_policy = "explicit"
        config.ack_wait = configuration.ackWait.components.seconds * 1_000_000_000
        config.max_ack_pending = 20_000
        config.deliver_policy = "all"
        config.max_waiting = 512
        // One delivery beyond the engine's own limit: that one arrives only when every earlier attempt ended
        // without an answer (the process stopped while handling it), and is recorded as given up.
        config.max_deliver = configuration.maxDeliveries + 1
        if ledger.apiLevel >= 1 {
            config.filter_subjects = subjects(kind)
        }
        return config
    }

    /// The configuration of the consumer of `kind` as this version makes it, keeping where an existing one starts
    /// (which the server never changes). A new answers' consumer on a log an earlier version consumed with one
    /// consumer for both kinds starts after the last message that consumer acknowledged in order (a later answer it
    /// had acknowledged comes again, and changes nothing: answers are applied once).
    func consumerConfig(_ kind: InboundKind, existing: ConsumerInfo?) async throws -> ConsumerConfig {
        var config = consumerConfig(kind)
        if let existing {
            config.deliver_policy = existing.config.deliver_policy
            config.opt_start_seq = existing.config.opt_start_seq
        } else if kind == .answers, let engine = try await consumerInfo(configuration.consumerName),
            engine.config.description == Self.singleConsumerDescription
        {
            // Only a consumer earlier versions made and use: its acknowledgements mean "handled". One this version
            // made (or narrowed) acknowledges answers it does not handle, so a new answers' consumer then reads from
            // the start (each answer again, changing nothing).
            config.deliver_policy = "by_start_sequence"
            config.opt_start_seq = engine.ack_floor.stream_seq + 1
        }
        return config
    }

    /// How versions before the answers' consumer described their single consumer of every inbound subject.
    static let singleConsumerDescription = "Ledgerflow engine: inbound commands and answers"

    func consumerInfo(_ name: String) async throws -> ConsumerInfo? {
        do {
            return try await ledger.api.consumerInfo(stream: ledger.stream, consumer: name)
        } catch let error as NATSError where error.jetStreamError == .consumerNotFound {
            return nil
        }
    }

    /// Makes the consumer of `kind`, or updates it to this version's configuration. One the server refuses to
    /// update is used as it is (logged): each consumer is a view of its own on the stream, so one that reads more
    /// subjects than its kind only acknowledges the others unhandled, and misses nothing.
    func makeConsumer(_ kind: InboundKind) async throws {
        let existing = try await consumerInfo(consumerName(kind))
        let config = try await consumerConfig(kind, existing: existing)
        do {
            try await ledger.ensureDurableConsumer(config)
        } catch let error as NATSError where existing != nil && error.jetStreamError != nil {
            logger.warning(
                "could not bring the consumer to this version's configuration; using it as it is",
                metadata: [LogKey.consumer: "\(consumerName(kind))", LogKey.error: "\(error.message)"])
        }
    }

    /// Makes (or updates) the consumer of `kind` and subscribes to it. The answers' consumer is made before the
    /// triggers' one stops reading answers, so none is left unread when an earlier version's log is taken over.
    func ensureConsumer(_ kind: InboundKind) async throws -> JetStreamPullSubscription {
        try await makeConsumer(.answers)
        if kind == .triggers { try await makeConsumer(.triggers) }
        return try ledger.pullSubscription(to: consumerName(kind))
    }

    /// Reads both inbound consumers until cancelled.
    func consumeInbound() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.consume(.answers) }
            group.addTask { await self.consume(.triggers) }
        }
    }

    func consume(_ kind: InboundKind) async {
        var subscription: JetStreamPullSubscription?
        var failures = 0
        var warned: ContinuousClock.Instant?
        while !Task.isCancelled {
            do {
                var batch = configuration.fetchBatch
                if kind == .triggers {
                    batch = await roomForRuns(warned: &warned)
                    if batch == 0 { return }  // cancelled while waiting
                }
                if subscription == nil { subscription = try await ensureConsumer(kind) }
                let messages = try await subscription!.fetch(batch: batch, maxWait: .milliseconds(500))
                failures = 0
                if messages.isEmpty { continue }
                let sub = subscription!
                // The whole batch is handled before the next fetch: at most `fetchBatch` messages in memory.
                await withTaskGroup(of: Void.self) { group in
                    for message in messages {
                        group.addTask { await self.handleInbound(message, kind: kind, subscription: sub) }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                failures += 1
                let delay = Self.backoff(failures)
                logger.warning(
                    "engine consumer failed; reopening it",
                    metadata: [
                        LogKey.consumer: "\(consumerName(kind))", LogKey.error: "\(error)", LogKey.delay: "\(delay)",
                    ])
                subscription = nil
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// How many triggers the next fetch may take: the room left under `maxRunsInFlight`, at most a fetch batch.
    /// While there is none, waits until runs finish (the triggers wait in the stream meanwhile). Each wait is
    /// counted (`ledgerflow_run_limit_reached_total`, `..._wait_seconds_total`); a warning says so at most once a
    /// minute (`warned`: when it last did). Zero only when cancelled.
    func roomForRuns(warned: inout ContinuousClock.Instant?) async -> Int {
        let limit = max(1, configuration.maxRunsInFlight)
        // While waiting, the wait's seconds are counted as they pass (a long wait shows before it ends).
        var waitingSince: ContinuousClock.Instant?
        while !Task.isCancelled {
            let room = limit - activeRunCount
            if let since = waitingSince {
                let now = ContinuousClock.now
                metrics.waitedForRoom(now - since)
                waitingSince = now
            }
            if room > 0 { return min(room, max(1, configuration.fetchBatch)) }
            if waitingSince == nil {
                let now = ContinuousClock.now
                waitingSince = now
                metrics.reachedRunLimit()
                if warned.map({ now - $0 >= .seconds(60) }) ?? true {
                    warned = now
                    logger.warning(
                        "this worker drives as many runs as it may (--max-runs-in-flight): new triggers wait in the stream until runs finish (said at most once a minute; ledgerflow_run_limit_wait_seconds_total counts the waits)",
                        metadata: [
                            "ledger.runs": "\(activeRunCount)", "ledger.limit": "\(limit)",
                        ])
                }
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return 0
    }

    /// 250 ms, 500 ms, 1 s, ... up to 30 s.
    static func backoff(_ attempt: Int) -> Duration {
        let exponent = max(0, min(attempt - 1, 7))
        return min(.milliseconds(250 * (1 << exponent)), .seconds(30))
    }

    func handleInbound(_ message: NATSMessage, kind: InboundKind, subscription: JetStreamPullSubscription) async {
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
        } else if !subjects(kind).contains(where: { subjectMatches(pattern: $0, subject: message.subject) }) {
            // On servers without multiple filter subjects the consumer sees every subject, and one whose filter was
            // narrowed may deliver again a message it had delivered before: those are not its to handle.
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
