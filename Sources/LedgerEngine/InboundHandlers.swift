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
        handlers.register(CalendarOutcomeHandler(), for: CalendarOutcomeHandler.types)
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
        // Decide as of this log position: the flows' read model must include everything before it.
        if sequence > 1,
            !(await engine.store.progress.wait(for: sequence - 1, timeout: engine.configuration.projectionWait))
        {
            engine.logger.warning(
                "flow read model lags behind the message; matching against what it has",
                metadata: [LogKey.sequence: "\(sequence)"])
        }
        let matches: [FlowCatalog.Entry]
        do {
            matches = try engine.catalog.matching(type: event.type, data: event.data, at: sequence)
        } catch {
            return .retry("could not read the flows: \(error)")
        }
        if matches.isEmpty {
            engine.logger.info(
                "no active flow is triggered by this intent",
                metadata: [
                    LogKey.sequence: "\(sequence)", "ledger.intent": "\(event.data["intent"]?.stringValue ?? "?")",
                ])
            return .handled
        }
        let entities = event.data["entities"] ?? .object([:])
        var refusals: [String] = []
        var transient: [String] = []
        for entry in matches {
            let flowID = entry.record.flow_id
            let dedupKey = event.data["signal_id"]?.stringValue ?? event.id
            let trigger = RunTrigger(
                kind: .event, event_type: event.type, event_id: event.id, sequence: sequence, data: event.data)
            do {
                let outcome = try await engine.startRun(
                    flowID: flowID, version: entry.version, definition: entry.definition,
                    definitionHash: entry.definitionHash, trigger: trigger,
                    input: entry.definition.applyingInputDefaults(to: entities), inputFromTrigger: true, mode: .live,
                    actor: "user:\(event.data[path: "user.id"]?.stringValue ?? "unknown")", dedupKey: dedupKey,
                    messageID: event.data["message_id"]?.stringValue,
                    channel: event.data["channel"])
                if case .duplicate(let runID) = outcome {
                    engine.logger.info(
                        "the signal already started this flow; not starting it again",
                        metadata: [
                            LogKey.flowID: "\(flowID)", LogKey.runID: "\(runID)", "ledger.signal": "\(dedupKey)",
                        ])
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
}

/// `CalendarEvent.Created|Updated|Canceled|CreateFailed`: the answer to a calendar command, handed to its run.
struct CalendarOutcomeHandler: InboundHandler {
    static let types = [
        EventType.calendarCreated, EventType.calendarUpdated, EventType.calendarCanceled,
        EventType.calendarCreateFailed,
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
        } else {
            result = .success(event.data)
        }
        // Acknowledged once the run has applied it (or ignored it as late), wherever the run is driven.
        let delivered: Bool
        do {
            delivered = try await engine.deliverAnswer(
                .recordResult(target, attempt: attempt, result: result, sourceSequence: sequence), runID: runID,
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
