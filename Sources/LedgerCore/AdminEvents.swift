/// `AccessTokenCreated` / `AccessTokenRevoked` (on `ledger.audit.token`): a change of the tokens file, recorded by
/// `ledgerflow tokens` before the file changes. Never the token, nor its hash.
public struct AccessTokenChanged: Codable, Sendable, Equatable {
    public var token_id: String
    public var subject: String
    public var role: String
    /// `created` or `revoked`.
    public var change: String
    public var actor: String
    public var actor_type: String?

    public init(token_id: String, subject: String, role: String, change: String, actor: String, actor_type: String?) {
        self.token_id = token_id
        self.subject = subject
        self.role = role
        self.change = change
        self.actor = actor
        self.actor_type = actor_type
    }
}

/// `ManualSignalIssued` (on `ledger.signal.<signal_id>`): the artificial signal of a manual run (seed 004 rules 1, 2
/// and 6). It has the shape of the flow's trigger event (`signal_type` is the trigger's event type and `payload`
/// that event's `data`), so a flow renders the same whether the event or an operator started it.
public struct ManualSignal: Codable, Sendable, Equatable {
    public var signal_id: String
    public var signal_type: String
    /// The flow the operator asked to run (a manual signal starts that flow only).
    public var flow_id: String
    public var payload: JSONValue
    public var metadata: Metadata

    public struct Metadata: Codable, Sendable, Equatable {
        public var source: Source
        public var trace_id: String
        public var executed_at: String
        public var mode: String
        public var on_behalf_of: String?

        public init(source: Source, trace_id: String, executed_at: String, mode: String, on_behalf_of: String?) {
            self.source = source
            self.trace_id = trace_id
            self.executed_at = executed_at
            self.mode = mode
            self.on_behalf_of = on_behalf_of
        }

        var json: JSONValue {
            var object: [String: JSONValue] = [
                "source": ["type": .string(source.type), "actor": source.actor.json],
                "trace_id": .string(trace_id), "executed_at": .string(executed_at), "mode": .string(mode),
            ]
            if let on_behalf_of { object["on_behalf_of"] = .string(on_behalf_of) }
            return .object(object)
        }
    }

    public struct Source: Codable, Sendable, Equatable {
        public var type: String
        public var actor: ActorRef

        public init(type: String = "manual", actor: ActorRef) {
            self.type = type
            self.actor = actor
        }
    }

    public init(signal_id: String, signal_type: String, flow_id: String, payload: JSONValue, metadata: Metadata) {
        self.signal_id = signal_id
        self.signal_type = signal_type
        self.flow_id = flow_id
        self.payload = payload
        self.metadata = metadata
    }

    /// The signal id of a manual run asked for with an idempotency key: derived from the flow, the mode and the key,
    /// so the same request gives the same signal (and so the same run).
    public static func signalID(flowID: String, mode: RunMode, idempotencyKey: String) -> String {
        DerivedID.uuid("manual/\(flowID)/\(mode.rawValue)/\(idempotencyKey)")
    }

    /// As the run's trigger data records it: the payload, with the signal's id and metadata beside it.
    public var triggerData: JSONValue {
        var data = payload.objectValue ?? [:]
        data["signal_id"] = .string(signal_id)
        data["metadata"] = metadata.json
        return .object(data)
    }
}
