public import LedgerCore

/// One line of the audit trail (`GET /automation/audit`, `ledgerflow audit`): who did what to which flow or run,
/// when, with the state before and after.
public struct AuditEntry: Codable, Sendable, Equatable {
    /// The log position of the event the entry comes from (entries are keyed and ordered by it).
    public var sequence: UInt64
    public var at: String
    /// `create`, `update`, `activate`, `deactivate`, `mark_broken`, `execute`, `cancel`, `redrive`, `token_create`,
    /// `token_revoke`, `schedule_pause`, `schedule_resume`.
    public var action: String
    public var actor: ActorRef
    public var flow_id: String?
    public var run_id: String?
    public var token_id: String?
    /// `dry_run` or `live_run` (execute).
    public var mode: String?
    public var before: JSONValue?
    public var after: JSONValue?

    public init(
        sequence: UInt64, at: String, action: String, actor: ActorRef, flow_id: String? = nil, run_id: String? = nil,
        token_id: String? = nil, mode: String? = nil, before: JSONValue? = nil, after: JSONValue? = nil
    ) {
        self.sequence = sequence
        self.at = at
        self.action = action
        self.actor = actor
        self.flow_id = flow_id
        self.run_id = run_id
        self.token_id = token_id
        self.mode = mode
        self.before = before
        self.after = after
    }
}

/// The audit trail as a read model: `<sequence, 20 digits> → AuditEntry`, folded from the events that record a
/// person's (or the engine's) decision about flows, runs and tokens. Scanned backwards it is newest first.
public enum AuditTrail {
    public static let table = "audit"

    /// The key of the entry of the event at `sequence` (and of a skipped message): zero-padded, so keys sort as
    /// sequences do.
    public static func key(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// Whether `event` is audited and needs the flow's record as it was before it (flow events).
    public static func needsFlow(_ event: LedgerEvent) -> String? {
        switch event.body {
        case .flowVersionRecorded(let e): return e.flow_id
        case .flowStatusChanged(let e): return e.flow_id
        default: return nil
        }
    }

    /// The entry of `event` at `sequence`, or nil when it is not audited. `flow` is the flow's record before the
    /// event (flow events only).
    public static func entry(_ event: LedgerEvent, sequence: UInt64, flow: FlowRecord?) -> AuditEntry? {
        switch event.body {
        case .flowVersionRecorded(let e):
            // A repeated version (the same event delivered again under another id) changes nothing.
            if flow?.version(e.version) != nil { return nil }
            let previous = flow?.current
            return AuditEntry(
                sequence: sequence, at: event.time, action: e.version == 1 ? "create" : "update",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), flow_id: e.flow_id,
                before: previous.map { ["version": .number(Double($0.version)), "definition": $0.definition] },
                after: ["version": .number(Double(e.version)), "definition": e.definition])
        case .flowStatusChanged(let e):
            guard let flow else { return nil }
            let action: String
            switch e.status {
            case .active: action = "activate"
            case .broken: action = "mark_broken"
            case .draft, .deprecated: action = "deactivate"
            }
            var after: [String: JSONValue] = [
                "status": .string(e.status.rawValue), "version": .number(Double(e.version)),
            ]
            if let reason = e.reason { after["reason"] = .string(reason) }
            return AuditEntry(
                sequence: sequence, at: event.time, action: action,
                actor: ActorRef.recorded(e.actor, type: e.actor_type),
                flow_id: e.flow_id,
                before: [
                    "status": .string(flow.status.rawValue),
                    "version": flow.active_version.map { .number(Double($0)) } ?? .null,
                ],
                after: .object(after))
        case .runStarted(let e) where e.trigger.kind == .manual:
            var after: [String: JSONValue] = [
                "run_id": .string(e.run_id), "flow_version": .number(Double(e.flow_version)),
                "input": e.effectiveInput,
            ]
            if let key = e.dedup_key { after["signal_id"] = .string(key) }
            if let user = e.on_behalf_of { after["on_behalf_of"] = .string(user) }
            return AuditEntry(
                sequence: sequence, at: event.time, action: "execute",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), flow_id: e.flow_id, run_id: e.run_id,
                mode: e.mode == .dry ? "dry_run" : "live_run", after: .object(after))
        case .runCancelRequested(let e):
            return AuditEntry(
                sequence: sequence, at: event.time, action: "cancel",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), flow_id: event.flowid, run_id: event.runid,
                after: ["reason": e.reason.map(JSONValue.string) ?? .null])
        case .runRedriven(let e):
            return AuditEntry(
                sequence: sequence, at: event.time, action: "redrive",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), flow_id: event.flowid, run_id: event.runid,
                after: [
                    "from_step": .string(e.from_step), "reset_steps": .array(e.reset_steps.map(JSONValue.string)),
                ])
        case .deliveryRedriven(let e):
            return AuditEntry(
                sequence: sequence, at: event.time, action: "redrive",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), flow_id: event.flowid, run_id: event.runid,
                after: ["webhook": true])
        case .scheduleStateChanged(let e):
            return AuditEntry(
                sequence: sequence, at: event.time, action: e.paused ? "schedule_pause" : "schedule_resume",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), flow_id: e.flow_id,
                before: ["paused": .bool(!e.paused)],
                after: ["paused": .bool(e.paused), "reason": e.reason.map(JSONValue.string) ?? .null])
        case .tokenChanged(let e):
            let token: JSONValue = ["subject": .string(e.subject), "role": .string(e.role)]
            let revoked = e.change == "revoked"
            return AuditEntry(
                sequence: sequence, at: event.time, action: revoked ? "token_revoke" : "token_create",
                actor: ActorRef.recorded(e.actor, type: e.actor_type), token_id: e.token_id,
                before: revoked ? token : nil, after: revoked ? nil : token)
        default:
            return nil
        }
    }
}
