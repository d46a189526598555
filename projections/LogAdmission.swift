public import LedgerCore

/// What the read models make of one message of the log. A pure function of the message, so the live projector
/// and a rebuild skip exactly the same messages and the models stay equal.
public enum LogAdmission: Equatable {
    /// An event to fold.
    case event(LedgerEvent)
    /// A message the models cannot apply: recorded with the reason. `fold`, when present, still moves the run it
    /// was written to past it (its position in the log), so the run is not wedged by a stale expected sequence.
    case skipped(reason: String, fold: LedgerEvent?)
    /// Not for the read models (inbound commands, answers, records of refusals).
    case ignored

    /// Reads one message: its subject, its bytes and its `Nats-Msg-Id`.
    public static func admit(subject: String, payload: [UInt8], messageID: String?) -> LogAdmission {
        if subject == Subjects.outputProduced {
            guard let messageID, messageID.hasSuffix(Self.outputSuffix) else { return .ignored }
            let runID = String(messageID.dropLast(Self.outputSuffix.count))
            guard Subjects.isValidToken(runID) else { return .ignored }
            return .event(
                LedgerEvent(
                    id: messageID, type: EventType.outputProduced, time: "", runid: runID, body: .outputPublished))
        }
        if subject.hasPrefix(Subjects.runPrefix) {
            return admitRunEvent(runID: String(subject.dropFirst(Subjects.runPrefix.count)), payload: payload)
        }
        if subject.hasPrefix(Subjects.flowPrefix) {
            return admitFlowEvent(flowID: String(subject.dropFirst(Subjects.flowPrefix.count)), payload: payload)
        }
        if subject.hasPrefix(Subjects.firingPrefix) || subject.hasPrefix(Subjects.schedulePrefix) {
            return admitScheduleEvent(subject: subject, payload: payload)
        }
        if subject == Subjects.tokenAudit {
            // Token changes feed the audit trail; anything else there is not theirs to fold.
            guard let event = try? LedgerEvent(bytes: payload), case .tokenChanged = event.body
            else {
                return .skipped(reason: "not a token change on \(Subjects.tokenAudit)", fold: nil)
            }
            return .event(event)
        }
        return .ignored
    }

    /// `Nats-Msg-Id` of a run's output: `<run_id>/output`.
    public static let outputSuffix = "/output"

    /// The event on the subject of a run or flow (`kind`) with id `id`, or why it is skipped. `position` is what
    /// moves the run or flow past a skipped message (its next append expects the subject's last sequence).
    static func read(
        _ kind: String, id: String, payload: [UInt8], position: LedgerEvent
    ) -> Result<LedgerEvent, LogSkip> {
        guard Subjects.isValidToken(id) else {
            return .failure(
                LogSkip(
                    reason:
                        "the \(kind) id in the subject is not a valid id (letters, digits, - and _, at most \(Limits.tokenCharacters))",
                    fold: nil))
        }
        do {
            return .success(try LedgerEvent(bytes: payload))
        } catch let error as EventSchemaError {
            return .failure(LogSkip(reason: error.description, fold: position))
        } catch {
            return .failure(LogSkip(reason: "not a readable event: \(error)", fold: position))
        }
    }

    struct LogSkip: Error {
        var reason: String
        var fold: LedgerEvent?
    }

    static func admitRunEvent(runID: String, payload: [UInt8]) -> LogAdmission {
        let position = LedgerEvent(id: "", type: "Unknown", time: "", runid: runID, body: .other)
        let event: LedgerEvent
        switch read("run", id: runID, payload: payload, position: position) {
        case .success(let read): event = read
        case .failure(let skip): return .skipped(reason: skip.reason, fold: skip.fold)
        }
        switch event.body {
        case .runStarted(let started) where started.run_id != runID:
            return .skipped(
                reason: "FlowRunStarted names run \(started.run_id.prefix(64)) on the subject of run \(runID)",
                fold: position)
        case .runStarted(let started)
        where started.dedup_key.map { DerivedID.uuid("\(started.flow_id)/\($0)") != runID } ?? false:
            // A run started by a signal has the id derived from its flow and key; anything else is not its start.
            return .skipped(
                reason: "FlowRunStarted's run id is not the one its flow and dedup key derive", fold: position)
        case .runStarted, .stepAttemptStarted, .stepAttemptSucceeded, .stepAttemptFailed, .stepSkipped,
            .stepLateResultRecorded, .runSucceeded,
            .runFailed, .runCompensating, .compensationStarted, .compensationSucceeded, .compensationFailed,
            .runCancelRequested, .runCancelled, .runRedriven, .runClaimed, .runAcknowledged, .deliveryStarted,
            .deliverySucceeded, .deliveryFailed, .deliveryRedriven:
            if let named = event.runid, named != runID {
                return .skipped(
                    reason: "\(event.type) names run \(named.prefix(64)) on the subject of run \(runID)", fold: position
                )
            }
            var event = event
            event.runid = runID
            return .event(event)
        case .other:
            return .skipped(
                reason: "unknown event type \"\(event.type.prefix(64))\" on a run's subject", fold: position)
        case .flowVersionRecorded, .flowStatusChanged, .rejected, .unhandled, .outputPublished, .tokenChanged,
            .signalIssued,
            .scheduleFiring, .scheduleStateChanged:
            return .skipped(reason: "\(event.type) does not belong on a run's subject", fold: position)
        }
    }

    /// A firing's outcome on `ledger.firing.<flow>.<nominal_ms>`, a pause or resume on `ledger.schedule.<flow>`:
    /// the event must name the flow of its subject.
    static func admitScheduleEvent(subject: String, payload: [UInt8]) -> LogAdmission {
        let firing = subject.hasPrefix(Subjects.firingPrefix)
        let rest = subject.dropFirst(firing ? Subjects.firingPrefix.count : Subjects.schedulePrefix.count)
        let tokens = rest.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard tokens.count == (firing ? 2 : 1), Subjects.isValidToken(tokens[0]) else {
            return .skipped(
                reason: "not a schedule subject (ledger.firing.<flow>.<ms>, ledger.schedule.<flow>)", fold: nil)
        }
        guard let event = try? LedgerEvent(bytes: payload) else {
            return .skipped(reason: "not a readable schedule event", fold: nil)
        }
        switch event.body {
        case .scheduleFiring(let e)
        where firing && e.flow_id == tokens[0]
            && Timestamp.parse(e.nominal_time).map({ String(ScheduleSpec.millis($0)) }) == tokens[1]:
            return .event(event)
        case .scheduleStateChanged(let e) where !firing && e.flow_id == tokens[0]:
            return .event(event)
        default:
            return .skipped(
                reason: "\(event.type.prefix(64)) does not belong on \(firing ? "a firing's" : "a schedule's") subject",
                fold: nil)
        }
    }

    static func admitFlowEvent(flowID: String, payload: [UInt8]) -> LogAdmission {
        // Like a run, a flow's position moves past what is skipped on its subject (its next change expects it).
        let position = LedgerEvent(id: "", type: "Unknown", time: "", flowid: flowID, body: .other)
        let event: LedgerEvent
        switch read("flow", id: flowID, payload: payload, position: position) {
        case .success(let read): event = read
        case .failure(let skip): return .skipped(reason: skip.reason, fold: skip.fold)
        }
        switch event.body {
        case .flowVersionRecorded(let e) where e.flow_id == flowID && e.version >= 1:
            return .event(event)
        case .flowStatusChanged(let e) where e.flow_id == flowID:
            return .event(event)
        case .flowVersionRecorded, .flowStatusChanged:
            return .skipped(
                reason: "\(event.type) names another flow (or an invalid version) on the subject of flow \(flowID)",
                fold: position)
        default:
            return .skipped(reason: "\(event.type.prefix(64)) does not belong on a flow's subject", fold: position)
        }
    }
}

/// A message of the log the read models skipped, and why (the `skipped` table).
public struct SkippedMessage: Codable, Sendable, Equatable {
    public var sequence: UInt64
    public var subject: String
    public var reason: String
    public init(sequence: UInt64, subject: String, reason: String) {
        self.sequence = sequence
        self.subject = String(subject.prefix(256))
        self.reason = String(reason.prefix(1024))
    }

    /// The table's key: the sequence, zero-padded so keys sort in log order.
    public var key: String { AuditTrail.key(sequence) }

    public static let table = "skipped"
}
