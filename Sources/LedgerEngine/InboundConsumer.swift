import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections

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
            config.filter_subjects = Subjects.engineInbound
        }
        do {
            try await ledger.api.createConsumer(stream: ledger.stream, config)
        } catch let error as NATSError
            where error.jetStreamCode == JetStreamErrorCode.consumerAlreadyExists
            || error.jetStreamCode == JetStreamErrorCode.consumerNameInUse
        {
            // An existing consumer with another configuration: keep its position.
            logger.info("engine consumer exists with another configuration (\(error.message)); using it")
        }
        return try JetStreamPullSubscription(connection: ledger.connection, stream: ledger.stream, consumer: configuration.consumerName)
    }

    func consumeInbound() async throws {
        var subscription: JetStreamPullSubscription?
        var failures = 0
        while !Task.isCancelled {
            do {
                if subscription == nil { subscription = try await ensureConsumer() }
                let messages = try await subscription!.fetch(batch: configuration.fetchBatch, maxWait: .milliseconds(500))
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
                logger.warning("engine consumer: \(error); reopening in \(delay)")
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
        if let injected = inboundFailpoint.withLock({ $0 })?(message) {
            outcome = injected
        } else if delivered > configuration.maxDeliveries {
            outcome = .refused(
                "delivered \(delivered) times without an answer (the engine stopped each time while handling it); given up")
        } else if message.payload.count > Limits.inboundMessageBytes {
            outcome = .refused(
                "the message is \(message.payload.count) bytes; inbound messages may be at most \(Limits.inboundMessageBytes) bytes (send large content by reference)")
        } else {
            switch message.subject {
            case Subjects.assistantCommandIssued:
                outcome = await handleAssistantCommand(message, sequence: sequence)
            case let subject where subject.hasPrefix("calendar.event."):
                outcome = await handleCalendarEvent(message, sequence: sequence)
            default:
                // On servers without multiple filter subjects the consumer sees every subject; those are not inbound.
                outcome = .handled
            }
        }
        switch outcome {
        case .handled:
            ack(message, subscription)
        case .refused(let reason):
            if await reject(message, sequence: sequence, reason: reason) { ack(message, subscription) }
        case .retry(let reason) where delivered >= configuration.maxDeliveries:
            let recorded = await reject(message, sequence: sequence, reason: "given up after \(delivered) deliveries: \(reason)")
            if recorded { ack(message, subscription) }
        case .retry(let reason):
            inboundRetries.add(1, ordering: .relaxed)
            let delay = Self.backoff(delivered)
            logger.warning(
                "message \(sequence) on \(message.subject) could not be handled (delivery \(delivered) of \(configuration.maxDeliveries)): \(reason); retrying in \(delay)")
            do { try subscription.nak(message, delay: delay) } catch { logger.warning("nak failed (the message is redelivered after ack_wait): \(error)") }
        case .interrupted:
            break
        }
    }

    func ack(_ message: NATSMessage, _ subscription: JetStreamPullSubscription) {
        do { try subscription.ack(message) } catch { logger.warning("ack failed (the message will be redelivered): \(error)") }
    }

    /// Records a refused inbound message with its reason (the message itself stays in the log at `sequence`).
    /// Returns false when the record could not be written (the message is then not acknowledged).
    @discardableResult
    func reject(_ message: NATSMessage, sequence: UInt64, reason: String) async -> Bool {
        messagesRejected.add(1, ordering: .relaxed)
        logger.warning("refused message \(sequence) on \(message.subject): \(reason)")
        let body = LedgerEvent.Body.rejected(InboundMessageRejected(subject: message.subject, sequence: sequence, reason: reason, payload: message.payload))
        let id = "rejected-\(sequence)"
        do {
            let payload = try body.encode(id: id, time: Timestamp.now(), runid: nil, flowid: nil, flowversion: nil, codec: EventCodec())
            _ = try await appendForever(
                OutgoingMessage(subject: Subjects.rejected(sequence), payload: payload, messageID: id, expectedLastSubjectSequence: 0))
            return true
        } catch let error as NATSError where error.isWrongLastSequence {
            return true  // recorded before (an earlier delivery, or another engine)
        } catch is CancellationError {
            return false
        } catch {
            logger.error("could not record the refusal of message \(sequence): \(error)")
            return false
        }
    }

    static let assistantRequired = ["message_id", "intent", "entities", "user.id", "channel.type", "channel.conversation_id"]
    /// Data fields that name things (and end up in keys, ids and subjects): strings of bounded length.
    static let assistantIdentifiers = ["message_id", "intent", "signal_id", "user.id", "channel.type", "channel.conversation_id"]

    /// The first identifier field that is not a short string, as a refusal reason.
    static func identifierProblem(_ data: JSONValue, _ fields: [String], type: String) -> String? {
        for field in fields {
            guard let value = data[path: field], value != .null else { continue }
            guard case .string(let text) = value else {
                return "\(type): data.\(field) must be a string"
            }
            if text.utf8.count > Limits.identifierBytes {
                return "\(type): data.\(field) is \(text.utf8.count) bytes; identifiers may be at most \(Limits.identifierBytes) bytes"
            }
        }
        return nil
    }

    func handleAssistantCommand(_ message: NATSMessage, sequence: UInt64) async -> InboundOutcome {
        let event: CloudEvent<JSONValue>
        switch decodeInbound(message.payload, expectedTypes: [EventType.assistantCommandIssued], required: Self.assistantRequired, codec: EventCodec()) {
        case .failure(let problem): return .refused(problem.reason)
        case .success(let decoded): event = decoded
        }
        if let problem = Self.identifierProblem(event.data, Self.assistantIdentifiers, type: event.type) { return .refused(problem) }
        guard case .object = event.data["entities"] else { return .refused("\(event.type): data.entities must be an object") }
        // Decide as of this log position: the flows' read model must include everything before it.
        if sequence > 1, !(await store.progress.wait(for: sequence - 1, timeout: configuration.projectionWait)) {
            logger.warning("flow read model lags behind log position \(sequence - 1); matching against what it has")
        }
        let matches: [FlowCatalog.Entry]
        do {
            matches = try catalog.matching(type: event.type, data: event.data)
        } catch {
            return .retry("could not read the flows: \(error)")
        }
        if matches.isEmpty {
            logger.info("no active flow is triggered by intent \(event.data["intent"]?.stringValue ?? "?") (message \(sequence))")
            return .handled
        }
        let entities = event.data["entities"] ?? .object([:])
        var refusals: [String] = []
        var transient: [String] = []
        for entry in matches {
            let dedupKey = event.data["signal_id"]?.stringValue ?? event.id
            let trigger = RunTrigger(kind: .event, event_type: event.type, event_id: event.id, sequence: sequence, data: event.data)
            do {
                let outcome = try await startRun(
                    flowID: entry.record.flow_id, version: entry.version, definition: entry.definition,
                    definitionHash: entry.definitionHash, trigger: trigger,
                    input: inputs(entry.definition, given: entities), inputFromTrigger: true, mode: .live,
                    actor: "user:\(event.data[path: "user.id"]?.stringValue ?? "unknown")", dedupKey: dedupKey,
                    messageID: event.data["message_id"]?.stringValue,
                    channel: event.data["channel"])
                if case .duplicate(let runID) = outcome {
                    logger.info("signal \(dedupKey) already started \(entry.record.flow_id) as run \(runID); not starting it again")
                }
            } catch is CancellationError {
                return .interrupted
            } catch let error as StartRefused {
                refusals.append("could not start flow \(entry.record.flow_id): \(error.reason)")
            } catch let error as NATSError where error.jetStreamCode == JetStreamErrorCode.messageTooLarge {
                // The run's first event can never be stored: say so, and go on with the other flows.
                refusals.append("could not start flow \(entry.record.flow_id): \(error.message)")
            } catch {
                // Runs started before the failure are not started twice on retry: their ids derive from the signal.
                transient.append("could not start flow \(entry.record.flow_id): \(error)")
            }
        }
        if !transient.isEmpty { return .retry((transient + refusals).joined(separator: "; ")) }
        if !refusals.isEmpty { return .refused(refusals.joined(separator: "; ")) }
        return .handled
    }

    static let calendarTypes = [EventType.calendarCreated, EventType.calendarUpdated, EventType.calendarCanceled, EventType.calendarCreateFailed]

    func handleCalendarEvent(_ message: NATSMessage, sequence: UInt64) async -> InboundOutcome {
        let event: CloudEvent<JSONValue>
        switch decodeInbound(message.payload, expectedTypes: Self.calendarTypes, required: ["command_id"], codec: EventCodec()) {
        case .failure(let problem): return .refused(problem.reason)
        case .success(let decoded): event = decoded
        }
        if let problem = Self.identifierProblem(event.data, ["command_id", "event_id"], type: event.type) { return .refused(problem) }
        let commandID = event.data["command_id"]?.stringValue ?? ""
        guard let (runID, target, attempt) = RunDecider.parseCommandID(commandID) else {
            return .refused("command_id \"\(commandID)\" was not issued by this engine")
        }
        let result: StepResult
        if event.type == EventType.calendarCreateFailed {
            result = .failure(StepError(
                kind: .calendarCreateFailed, message: event.data["reason"]?.stringValue ?? "the calendar refused the event",
                retryable: event.data["retryable"]?.boolValue ?? false))
        } else {
            result = .success(event.data)
        }
        let driver: RunDriver?
        do {
            driver = try await self.driver(for: runID, seenAt: sequence)
        } catch {
            return .retry("could not load run \(runID): \(error)")
        }
        guard let driver else {
            logger.info("answer \(sequence) for run \(runID) arrived after the run finished (or for an unknown run); kept in the log")
            return .handled
        }
        // Acknowledged once the run has applied it (or ignored it as late).
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            driver.send(.input(.recordResult(target, attempt: attempt, result: result, sourceSequence: sequence), done: { continuation.resume() }))
        }
        return .handled
    }
}
