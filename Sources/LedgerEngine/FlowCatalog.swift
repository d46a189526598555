import Foundation
import LedgerCore
import LedgerProjections
import Synchronization

/// Definitions of flows as the read model holds them, decoded once and cached until a flow changes.
final class FlowCatalog: Sendable {
    struct Entry: Sendable {
        let record: FlowRecord
        let definition: FlowDefinition
        let version: Int
        var definitionHash: String { record.version(version)?.definition_hash ?? "" }
    }
    struct Cache {
        var generation: UInt64 = .max
        var active: [Entry] = []
        var pinned: [String: (FlowDefinition, String)] = [:]
    }

    let store: ReadModelStore
    let registry: ActionRegistry
    private let cache = Mutex(Cache())

    init(store: ReadModelStore, registry: ActionRegistry) {
        self.store = store
        self.registry = registry
    }

    /// Active flows whose event trigger matches an inbound message stored at log position `sequence` (0: unknown):
    /// only flows activated before that position, so a message delivered again later (a recreated consumer, a
    /// redelivery) never starts a flow activated after it was sent.
    func matching(type: String, data: JSONValue, at sequence: UInt64) throws -> [Entry] {
        try active().filter { entry in
            if sequence > 0, let since = entry.record.active_since, since > sequence { return false }
            return entry.definition.trigger?.matches(type: type, data: data) ?? false
        }
    }

    func active() throws -> [Entry] {
        let generation = store.flowGeneration.load(ordering: .relaxed)
        if let cached = cache.withLock({ $0.generation == generation ? $0.active : nil }) { return cached }
        var entries: [Entry] = []
        for record in try store.flows() where record.status == .active {
            let version = record.active_version ?? record.current_version
            guard let entry = record.version(version), let definition = try? decode(entry.definition) else { continue }
            entries.append(Entry(record: record, definition: definition, version: version))
        }
        cache.withLock {
            $0.generation = generation
            $0.active = entries
        }
        return entries
    }

    /// The definition a run is pinned to (versions never change, so this cache never goes stale).
    func definition(flowID: String, version: Int) throws -> FlowDefinition? {
        try pinned(flowID: flowID, version: version)?.definition
    }

    /// The definition of a version and its hash (computed once, at registration).
    func pinned(flowID: String, version: Int) throws -> (definition: FlowDefinition, hash: String)? {
        let key = "\(flowID)@\(version)"
        if let cached = cache.withLock({ $0.pinned[key] }) { return cached }
        guard let entry = try store.flow(flowID)?.version(version) else { return nil }
        let definition = try decode(entry.definition)
        cache.withLock { $0.pinned[key] = (definition, entry.definition_hash) }
        return (definition, entry.definition_hash)
    }

    /// A stored definition, validated again: the log may hold one that this version refuses (written by another
    /// version, or by someone publishing on the flow's subject), and the engine runs only what validates.
    func decode(_ json: JSONValue) throws -> FlowDefinition {
        switch FlowValidator.validate(json, registry: registry) {
        case .success(let definition): return definition
        case .failure(let failure): throw EngineError.invalidDefinition(failure.problems)
        }
    }
}
