/// `data` of `FlowOutputProduced` (SPEC §3).
public struct FlowOutputProduced: Codable, Sendable, Equatable {
    public var run_id: String
    public var flow_id: String
    public var flow_version: Int
    public var message_id: String?
    public var channel: JSONValue?
    public var text: String?
    public var data: JSONValue?
    /// `ack`: the immediate acknowledgement (`output.ack`), sent as soon as the run starts; `final`: the run's
    /// output once every step is done. Absent in outputs recorded before acknowledgements existed (all final).
    public var kind: Kind?

    /// Which of a run's outputs a `FlowOutputProduced` is.
    public enum Kind: String, Codable, Sendable {
        case ack
        case final
    }

    public init(
        run_id: String, flow_id: String, flow_version: Int, message_id: String?, channel: JSONValue?, text: String?,
        data: JSONValue?, kind: Kind? = .final
    ) {
        self.kind = kind
        self.run_id = run_id
        self.flow_id = flow_id
        self.flow_version = flow_version
        self.message_id = message_id
        self.channel = channel
        self.text = text
        self.data = data
    }
}

/// A flow definition as registered: `FlowRegistered` (version 1) and `FlowVersionCreated` (later versions).
public struct FlowVersionRecorded: Codable, Sendable, Equatable {
    public var flow_id: String
    public var version: Int
    public var definition: JSONValue
    public var definition_hash: String
    public var actor: String
    public var based_on: Int?
    public var summary: String?
    /// The actor's type (`ActorRef`); absent in events recorded before the audit trail.
    public var actor_type: String?

    public init(
        flow_id: String, version: Int, definition: JSONValue, definition_hash: String, actor: String,
        based_on: Int? = nil, summary: String? = nil, actor_type: String? = nil
    ) {
        self.actor_type = actor_type
        self.flow_id = flow_id
        self.version = version
        self.definition = definition
        self.definition_hash = definition_hash
        self.actor = actor
        self.based_on = based_on
        self.summary = summary
    }
}

/// Where a flow is in its life: whether runs start from it.
public enum FlowStatus: String, Codable, Sendable {
    /// Registered, not yet activated: nothing starts it.
    case draft
    /// Its `active_version` starts runs.
    case active
    /// Deactivated: nothing starts it until it is activated again.
    case deprecated
    /// Its definition cannot run; a new version must fix it before it can be activated.
    case broken
}

/// `FlowActivated` / `FlowDeactivated` / `FlowMarkedBroken`.
public struct FlowStatusChanged: Codable, Sendable, Equatable {
    public var flow_id: String
    public var version: Int
    public var actor: String
    public var status: FlowStatus
    /// The actor's type (`ActorRef`); absent in events recorded before the audit trail.
    public var actor_type: String?
    /// Why (a flow marked broken: what no longer validates).
    public var reason: String?
    public init(
        flow_id: String, version: Int, actor: String, status: FlowStatus, actor_type: String? = nil,
        reason: String? = nil
    ) {
        self.actor_type = actor_type
        self.reason = reason
        self.flow_id = flow_id
        self.version = version
        self.actor = actor
        self.status = status
    }
}
