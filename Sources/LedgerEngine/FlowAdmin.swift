import Foundation
public import LedgerCore
import LedgerNATS
public import LedgerProjections
public import Logging
public import ServiceLifecycle

/// Registers, versions and (de)activates flows: each change is an event on the flow's subject, appended with the
/// flow's expected last sequence (so two admins can never both win), and visible in the read model on return.
public struct FlowAdmin: Sendable {
    public let ledger: Ledger
    public let store: ReadModelStore
    public var registry: ActionRegistry = .builtIn
    public var projectionWait: Duration = .seconds(5)

    public init(ledger: Ledger, store: ReadModelStore) {
        self.ledger = ledger
        self.store = store
    }

    func validate(_ json: JSONValue) throws -> FlowDefinition {
        switch FlowValidator.validate(json, registry: registry) {
        case .success(let definition): return definition
        case .failure(let failure): throw EngineError.invalidDefinition(failure.problems)
        }
    }

    /// The definition as stored: the body as given, minus the fields that belong to the record.
    func storedDefinition(_ json: JSONValue) -> JSONValue {
        guard var object = json.objectValue else { return json }
        for key in ["version", "status", "current_version"] { object.removeValue(forKey: key) }
        return .object(object)
    }

    /// A body asking for a status the operation does not give is refused, never silently changed (seed 004: create is
    /// always `draft`; status changes only through activate and deactivate).
    func refuseStatus(_ json: JSONValue, allowed: FlowStatus, _ hint: String) throws {
        guard let asked = json["status"], asked != .null else { return }
        guard asked.stringValue == allowed.rawValue else {
            let shown = asked.stringValue.map { "\"\($0)\"" } ?? "a non-string value"
            throw EngineError.invalidDefinition([
                ValidationProblem(path: "status", message: "\(shown) is refused: \(hint)")
            ])
        }
    }

    /// Registers a new flow as `draft`, version 1.
    public func register(_ json: JSONValue, actor: ActorRef) async throws -> FlowRecord {
        try refuseStatus(
            json, allowed: .draft,
            "a flow is always created as draft (leave status out, then POST its activate route)")
        let body = storedDefinition(json)
        let definition = try validate(body)
        if try store.flow(definition.id) != nil { throw EngineError.flowExists(definition.id) }
        let event = FlowVersionRecorded(
            flow_id: definition.id, version: 1, definition: body, definition_hash: DefinitionHash.of(definition),
            actor: actor.id, actor_type: actor.type)
        do {
            return try await append(.flowVersionRecorded(event), flowID: definition.id, expected: 0)
        } catch let error as NATSError where error.isWrongLastSequence {
            throw EngineError.flowExists(definition.id)
        }
    }

    /// A new version of an existing flow; `basedOn` must be the current version.
    public func update(_ flowID: String, _ json: JSONValue, basedOn: Int?, actor: ActorRef) async throws -> FlowRecord {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        try refuseStatus(
            json, allowed: record.status,
            "a new version keeps the flow's status (\(record.status.rawValue)); change it with activate or deactivate")
        guard let basedOn else {
            throw EngineError.badRequest("the body must carry \"version\": the version this change is based on")
        }
        guard basedOn == record.current_version else {
            throw EngineError.versionConflict(current: record.current_version)
        }
        var body = storedDefinition(json)
        if case .object(var object) = body, object["id"] == nil {
            object["id"] = .string(flowID)
            body = .object(object)
        }
        let definition = try validate(body)
        guard definition.id == flowID else {
            throw EngineError.badRequest("the definition's id \"\(definition.id)\" is not \"\(flowID)\"")
        }
        let event = FlowVersionRecorded(
            flow_id: flowID, version: record.current_version + 1, definition: body,
            definition_hash: DefinitionHash.of(definition),
            actor: actor.id, based_on: basedOn, actor_type: actor.type)
        do {
            return try await append(.flowVersionRecorded(event), flowID: flowID, expected: record.last_sequence)
        } catch let error as NATSError where error.isWrongLastSequence {
            let current = try store.flow(flowID)?.current_version ?? record.current_version
            throw EngineError.versionConflict(current: current)
        }
    }

    /// `draft`/`deprecated` → `active` (the current version). A `broken` flow cannot be activated until a version
    /// saved after it was marked broken validates.
    public func activate(_ flowID: String, actor: ActorRef) async throws -> FlowRecord {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        if record.status == .broken, record.brokenVersion.map({ $0 >= record.current_version }) ?? true {
            throw EngineError.invalidState(
                "flow \(flowID) is broken (v\(record.current_version) no longer validates against the action registry): save a valid version with PUT first, then activate it"
            )
        }
        if let current = record.current,
            case .failure(let failure) = FlowValidator.validate(current.definition, registry: registry)
        {
            throw EngineError.invalidState(
                "flow \(flowID) v\(record.current_version) no longer validates: \(failure.problems.map(\.description).joined(separator: "; "))"
            )
        }
        if record.status == .active, record.active_version == record.current_version { return record }
        let event = FlowStatusChanged(
            flow_id: flowID, version: record.current_version, actor: actor.id, status: .active, actor_type: actor.type)
        return try await changeStatus(event, record)
    }

    /// `active` → `deprecated`.
    public func deactivate(_ flowID: String, actor: ActorRef) async throws -> FlowRecord {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard record.status == .active else {
            throw EngineError.invalidState("flow \(flowID) is \(record.status.rawValue), not active")
        }
        let event = FlowStatusChanged(
            flow_id: flowID, version: record.current_version, actor: actor.id, status: .deprecated,
            actor_type: actor.type)
        return try await changeStatus(event, record)
    }

    /// Marks `broken` (by an event, actor `system`) every flow whose current definition no longer validates
    /// against this process's action registry (an action removed, say), so nothing starts it and it cannot be
    /// activated until a valid version is saved. Returns the flows it marked.
    @discardableResult
    public func markBrokenFlows() async throws -> [String] {
        var marked: [String] = []
        for record in try store.flows() where record.status != .broken {
            guard let current = record.current,
                case .failure(let failure) = FlowValidator.validate(current.definition, registry: registry)
            else { continue }
            let reason = failure.problems.map(\.description).joined(separator: "; ")
            let event = FlowStatusChanged(
                flow_id: record.flow_id, version: record.current_version, actor: ActorRef.system.id, status: .broken,
                actor_type: ActorRef.system.type, reason: String(reason.prefix(Limits.reasonBytes)))
            do {
                _ = try await changeStatus(event, record)
                marked.append(record.flow_id)
            } catch EngineError.invalidState {
                continue  // changed meanwhile: the next check sees the new version
            }
        }
        return marked
    }

    func changeStatus(_ event: FlowStatusChanged, _ record: FlowRecord) async throws -> FlowRecord {
        do {
            return try await append(.flowStatusChanged(event), flowID: record.flow_id, expected: record.last_sequence)
        } catch let error as NATSError where error.isWrongLastSequence {
            throw EngineError.invalidState("flow \(record.flow_id) was changed meanwhile; read it again and retry")
        }
    }

    func append(_ body: LedgerEvent.Body, flowID: String, expected: UInt64) async throws -> FlowRecord {
        let ack: AppendedEvent
        do {
            ack = try await ledger.append(body, to: .flow(id: flowID), expectedLastSequence: expected, retry: .once)
        } catch let error as NATSError where error.isTimeout {
            throw EngineError.unavailable(
                "NATS did not answer in time (\(error.message)); the change may still be recorded: read the flow before trying again."
            )
        } catch let error as NATSError where !error.isWrongLastSequence {
            throw EngineError.unavailable("NATS did not accept the change (\(error.message)); nothing was recorded.")
        }
        guard await store.progress.wait(for: ack.sequence, timeout: projectionWait), let record = try store.flow(flowID)
        else {
            throw EngineError.unavailable(
                "the change was recorded at log position \(ack.sequence) but the read model has not caught up yet; read it again shortly"
            )
        }
        return record
    }
}

/// At start, once the read models have caught up with the log: marks broken the flows whose current definition
/// this process's action registry no longer accepts (`FlowAdmin.markBrokenFlows`). Ends when done.
public struct BrokenFlowsCheck: Service {
    let admin: FlowAdmin
    let logger: Logger

    public init(admin: FlowAdmin, logger: Logger) {
        self.admin = admin
        self.logger = logger
    }

    public func run() async throws {
        do {
            let end = try await admin.ledger.lastSequence()
            guard await admin.store.progress.wait(for: end, timeout: .seconds(120)) else {
                logger.warning(
                    "the read models did not catch up within 2 minutes; flows were not checked against the action registry"
                )
                return
            }
            for flow in try await admin.markBrokenFlows() {
                logger.warning(
                    "flow marked broken: its current version uses what this process does not offer; save a valid version, then activate it",
                    metadata: [LogKey.flowID: "\(flow)"])
            }
        } catch {
            logger.warning("flows were not checked against the action registry", metadata: [LogKey.error: "\(error)"])
        }
    }
}
