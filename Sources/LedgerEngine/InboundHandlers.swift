import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging

/// What the engine does with one type of inbound event (seed 002: one handler per event type).
protocol InboundHandler: Sendable {
    /// Data fields the event must carry.
    var requiredFields: [String] { get }
    /// Data fields that name things: strings of bounded length when present.
    var identifierFields: [String] { get }
    /// Applies the event (already checked for `requiredFields` and `identifierFields`) found at `sequence`.
    func handle(_ event: CloudEvent<JSONValue>, at sequence: UInt64, engine: Engine) async -> InboundOutcome
}

/// The handlers by CloudEvents `type`.
struct InboundHandlers: Sendable {
    private var byType: [String: any InboundHandler] = [:]

    /// Every type with a handler, in order.
    private(set) var types: [String] = []

    mutating func register(_ handler: any InboundHandler, for types: [String]) {
        for type in types { byType[type] = handler }
        self.types = byType.keys.sorted()
    }

    func handler(for type: String) -> (any InboundHandler)? { byType[type] }

    /// Chat commands start flows; calendar outcomes answer the steps that sent commands.
    static let builtIn: InboundHandlers = {
        var handlers = InboundHandlers()
        handlers.register(AssistantCommandHandler(), for: [EventType.assistantCommandIssued])
        handlers.register(CommandAnswerHandler(), for: CommandAnswerHandler.types)
        return handlers
    }()
}

/// `AssistantCommandIssued`: starts every active flow whose trigger matches, once per signal.
struct AssistantCommandHandler: InboundHandler {
    let requiredFields = ["message_id", "intent", "entities", "user.id", "channel.type", "channel.conversation_id"]
    let identifierFields = ["message_id", "intent", "signal_id", "user.id", "channel.type", "channel.conversation_id"]

    func handle(_ event: CloudEvent<JSONValue>, at sequence: UInt64, engine: Engine) async -> InboundOutcome {
        guard case .object = event.data["entities"] else {
            return .refused("\(event.type): data.entities must be an object")
        }
        let entities = event.data["entities"] ?? .object([:])
        return await engine.startTriggeredFlows(
            by: event, at: sequence, dedupKey: event.data["signal_id"]?.stringValue ?? event.id,
            actor: "user:\(event.data[path: "user.id"]?.stringValue ?? "unknown")",
            messageID: event.data["message_id"]?.stringValue, channel: event.data["channel"],
            unmatched: "no active flow is triggered by intent \(event.data["intent"]?.stringValue ?? "?")",
            input: { entities })
    }
}

/// Any event of another service on the event subjects (`events.>` by default; seed 002): starts every active flow
/// whose trigger names its `type` (and whose `match` holds), once per event id and flow. The run's input is the
/// event's `data` (an object).
struct FlowEventHandler: InboundHandler {
    let requiredFields: [String] = []
    let identifierFields = ["signal_id"]

    /// Types with subjects of their own: on the event subjects they would reach flows their own handlers guard.
    static let reservedTypes: Set<String> = Set(InboundHandlers.builtIn.types + [EventType.flowRunRequested])

    func handle(_ event: CloudEvent<JSONValue>, at sequence: UInt64, engine: Engine) async -> InboundOutcome {
        if Self.reservedTypes.contains(event.type) {
            return .refused(
                "\(event.type) is not taken on the event subjects: it has a subject of its own (see SPEC §3), publish it there"
            )
        }
        guard case .object = event.data else {
            return .refused(
                "\(event.type): data must be a JSON object (flows read its fields), got \(event.data.compactJSON.prefix(40))"
            )
        }
        let source = String(event.source.prefix(Limits.identifierBytes))
        return await engine.startTriggeredFlows(
            by: event, at: sequence, dedupKey: event.data["signal_id"]?.stringValue ?? event.id,
            actor: "service:\(source)", messageID: nil, channel: nil,
            unmatched: "no active flow's trigger names event type \(event.type) (or its match conditions)",
            input: { event.data })
    }
}

extension Engine {
    /// Starts every active flow whose trigger matches `event` (stored at `sequence`), once per dedup key and flow.
    /// An event no flow takes is recorded (`InboundEventUnhandled`, with `unmatched` as the reason) and logged as a
    /// warning: nothing is skipped in silence.
    func startTriggeredFlows(
        by event: CloudEvent<JSONValue>, at sequence: UInt64, dedupKey: String, actor: String, messageID: String?,
        channel: JSONValue?, unmatched: String, input: () -> JSONValue
    ) async -> InboundOutcome {
        // Decide as of this log position: the flows' read model must include everything before it.
        if sequence > 1, !(await store.progress.wait(for: sequence - 1, timeout: configuration.projectionWait)) {
            logger.warning(
                "flow read model lags behind the message; matching against what it has",
                metadata: [LogKey.sequence: "\(sequence)"])
        }
        let matches: [FlowCatalog.Entry]
        do {
            matches = try catalog.matching(type: event.type, data: event.data, at: sequence)
        } catch {
            return .retry("could not read the flows: \(error)")
        }
        if matches.isEmpty {
            return await recordUnhandled(event, at: sequence, reason: unmatched)
        }
        let values = input()
        let parent = inboundTrace(event.traceparent, from: event.type, sequence: sequence)
        var refusals: [String] = []
        var transient: [String] = []
        for entry in matches {
            let flowID = entry.record.flow_id
            let trigger = RunTrigger(
                kind: .event, event_type: event.type, event_id: event.id, sequence: sequence, data: event.data)
            do {
                let outcome = try await startRun(
                    flowID: flowID, version: entry.version, definition: entry.definition,
                    definitionHash: entry.definitionHash, trigger: trigger,
                    input: entry.definition.applyingInputDefaults(to: values), inputFromTrigger: true, mode: .live,
                    actor: actor, dedupKey: dedupKey, messageID: messageID, channel: channel, traceparent: parent)
                if case .duplicate(let runID) = outcome {
                    var metadata: Logger.Metadata = [
                        LogKey.flowID: "\(flowID)", LogKey.runID: "\(runID)", "ledger.signal": "\(dedupKey)",
                    ]
                    if let parent { metadata[LogKey.traceID] = "\(parent.traceID)" }
                    logger.info("the signal already started this flow; not starting it again", metadata: metadata)
                }
            } catch is CancellationError {
                return .interrupted
            } catch let error as StartRefused {
                refusals.append("could not start flow \(flowID): \(error.reason)")
            } catch let error as NATSError where error.jetStreamError == .messageTooLarge {
                // The run's first event can never be stored: say so, and go on with the other flows.
                refusals.append("could not start flow \(flowID): \(error.message)")
            } catch {
                // Runs started before the failure are not started twice on retry: their ids derive from the signal.
                transient.append("could not start flow \(flowID): \(error)")
            }
        }
        if !transient.isEmpty { return .retry((transient + refusals).joined(separator: "; ")) }
        if !refusals.isEmpty { return .refused(refusals.joined(separator: "; ")) }
        return .handled
    }

    /// Records that no handler took the event at `sequence` (once, on `ledger.unhandled.<sequence>`) and logs a
    /// warning. The event itself stays in the log; it was valid, so it is not a refusal.
    func recordUnhandled(_ event: CloudEvent<JSONValue>, at sequence: UInt64, reason: String) async -> InboundOutcome {
        metrics.unhandled()
        logger.warning(
            "no handler took an inbound event; recording it",
            metadata: [
                LogKey.sequence: "\(sequence)", "ledger.event_type": "\(event.type)", LogKey.error: "\(reason)",
            ])
        let body = LedgerEvent.Body.unhandled(
            InboundEventUnhandled(
                event_id: event.id, type: event.type, source: event.source, sequence: sequence, reason: reason))
        do {
            try await ledger.append(
                body, to: .unhandled(sequence: sequence), expectedLastSequence: 0, id: "unhandled-\(sequence)")
            return .handled
        } catch let error as NATSError where error.isWrongLastSequence {
            return .handled  // recorded before (an earlier delivery, or another engine)
        } catch is CancellationError {
            return .interrupted
        } catch {
            return .retry("could not record the unhandled event: \(error)")
        }
    }
}

/// `CalendarEvent.Created|Updated|Canceled|CreateFailed` and `Notification.Sent|Failed`: the answer to a command a
/// step sent, handed to its run by the command's `command_id`. A calendar outcome settles the waiting step; a
/// notification answer is recorded on its (already succeeded) `notify` step.
struct CommandAnswerHandler: InboundHandler {
    static let types = [
        EventType.calendarCreated, EventType.calendarUpdated, EventType.calendarCanceled,
        EventType.calendarCreateFailed, EventType.notificationSent, EventType.notificationFailed,
    ]
    let requiredFields = ["command_id"]
    let identifierFields = ["command_id", "event_id"]

    func handle(_ event: CloudEvent<JSONValue>, at sequence: UInt64, engine: Engine) async -> InboundOutcome {
        let commandID = event.data["command_id"]?.stringValue ?? ""
        guard let (runID, target, attempt) = RunDecider.parseCommandID(commandID) else {
            return .refused("command_id \"\(commandID)\" was not issued by this engine")
        }
        let result: StepResult
        if event.type == EventType.calendarCreateFailed {
            result = .failure(
                StepError(
                    kind: .calendarCreateFailed,
                    message: event.data["reason"]?.stringValue ?? "the calendar refused the event",
                    retryable: event.data["retryable"]?.boolValue ?? false))
        } else if event.type == EventType.notificationFailed {
            // The request reached the service (it answered): the notify step did its part; the answer, failed or
            // not, is recorded on it and changes nothing else.
            var data = event.data.objectValue ?? [:]
            data["status"] = data["status"] ?? "failed"
            result = .success(.object(data))
        } else {
            result = .success(event.data)
        }
        // Acknowledged once the run has applied it (or ignored it as late), wherever the run is driven.
        let delivered: Bool
        do {
            delivered = try await engine.deliverAnswer(
                .recordAnswer(
                    target, attempt: attempt, result: result, sourceSequence: sequence,
                    service: event.type.hasPrefix("Notification.") ? .notifications : .calendar), runID: runID,
                seenAt: sequence)
        } catch {
            // Never acknowledged unless applied: when the engine is stopping the answer waits for the next start.
            if Task.isCancelled { return .interrupted }
            return .retry("could not hand the answer to run \(runID): \(error)")
        }
        if !delivered {
            engine.logger.info(
                "an answer arrived after its run finished (or for an unknown run); kept in the log",
                metadata: [LogKey.runID: "\(runID)", LogKey.sequence: "\(sequence)"])
        }
        return .handled
    }
}
