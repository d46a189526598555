import Foundation
public import LedgerCore
import LedgerNATS
public import LedgerProjections

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

    /// Registers a new flow as `draft`, version 1.
    public func register(_ json: JSONValue, actor: String) async throws -> FlowRecord {
        let body = storedDefinition(json)
        let definition = try validate(body)
        if try store.flow(definition.id) != nil { throw EngineError.flowExists(definition.id) }
        let event = FlowVersionRecorded(
            flow_id: definition.id, version: 1, definition: body, definition_hash: DefinitionHash.of(definition),
            actor: actor)
        do {
            return try await append(.flowVersionRecorded(event), flowID: definition.id, expected: 0)
        } catch let error as NATSError where error.isWrongLastSequence {
            throw EngineError.flowExists(definition.id)
        }
    }

    /// A new version of an existing flow; `basedOn` must be the current version.
    public func update(_ flowID: String, _ json: JSONValue, basedOn: Int?, actor: String) async throws -> FlowRecord {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
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
            actor: actor, based_on: basedOn)
        do {
            return try await append(.flowVersionRecorded(event), flowID: flowID, expected: record.last_sequence)
        } catch let error as NATSError where error.isWrongLastSequence {
            let current = try store.flow(flowID)?.current_version ?? record.current_version
            throw EngineError.versionConflict(current: current)
        }
    }

    /// `draft`/`deprecated` → `active` (the current version). A `broken` flow cannot be activated.
    public func activate(_ flowID: String, actor: String) async throws -> FlowRecord {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        if record.status == .broken {
            throw EngineError.invalidState("flow \(flowID) is broken: fix its definition with a new version first")
        }
        if let current = record.current,
            case .failure(let failure) = FlowValidator.validate(current.definition, registry: registry)
        {
            throw EngineError.invalidState(
                "flow \(flowID) v\(record.current_version) no longer validates: \(failure.problems.map(\.description).joined(separator: "; "))"
            )
        }
        if record.status == .active, record.active_version == record.current_version { return record }
        let event = FlowStatusChanged(flow_id: flowID, version: record.current_version, actor: actor, status: .active)
        return try await changeStatus(event, record)
    }

    /// `active` → `deprecated`.
    public func deactivate(_ flowID: String, actor: String) async throws -> FlowRecord {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard record.status == .active else {
            throw EngineError.invalidState("flow \(flowID) is \(record.status.rawValue), not active")
        }
        let event = FlowStatusChanged(
            flow_id: flowID, version: record.current_version, actor: actor, status: .deprecated)
        return try await changeStatus(event, record)
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
        } catch let error as NATSError where !error.isWrongLastSequence {
            throw EngineError.unavailable("NATS did not accept the change: \(error.message)")
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
