/// Who did something, as the audit trail shows it: a type (`admin`, `operator`, `viewer` for API tokens; `user`
/// for a chat user; `service` for a NATS caller; `system` for the engine itself; `cli` for a local command) and an
/// id (a token's subject, a user id, a service's source).
public struct ActorRef: Codable, Sendable, Equatable, Hashable, ExpressibleByStringLiteral {
    public var type: String
    public var id: String

    public init(type: String, id: String) {
        self.type = type
        self.id = id
    }

    /// `"ops"` is the actor an event recording only `actor: "ops"` names (`recorded(_:type:)`).
    public init(stringLiteral value: String) { self = ActorRef.recorded(value, type: nil) }

    public var json: JSONValue { ["type": .string(type), "id": .string(id)] }

    /// The engine acting on its own (a flow found broken, a run claimed).
    public static let system = ActorRef(type: "system", id: "ledgerflow")

    /// The actor of an event that records `actor` (the id) and, since the audit trail, `actor_type`. Older events
    /// carry only the id: `user:<id>` and `service:<id>` name their type, anything else is taken as an admin's.
    public static func recorded(_ actor: String, type: String?) -> ActorRef {
        if let type { return ActorRef(type: type, id: actor) }
        for prefix in ["user", "service", "cli", "schedule"] where actor.hasPrefix(prefix + ":") {
            return ActorRef(type: prefix, id: String(actor.dropFirst(prefix.count + 1)))
        }
        if actor.hasPrefix("ledgerflow") { return ActorRef(type: "system", id: actor) }
        return ActorRef(type: "admin", id: actor)
    }
}
