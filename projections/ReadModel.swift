public import Foundation
public import LedgerCore

/// A read model: a pure fold of the log, one state per key, stored as JSON in its own LMDB table.
public protocol ReadModel: Sendable {
    associatedtype State: Codable & Sendable & Equatable
    /// The LMDB table holding `key → JSON(State)`.
    static var table: String { get }
    /// The key an event changes, or nil when the model ignores it.
    static func key(for event: LedgerEvent) -> String?
    /// The fold: the state after `event` (stored at stream sequence `sequence`); nil deletes the key.
    static func evolve(_ state: State?, _ event: LedgerEvent, sequence: UInt64) -> State?
    /// The same fold in place (what the store calls): a model whose states are large changes them without a copy.
    static func evolve(_ state: inout State?, _ event: LedgerEvent, sequence: UInt64)
    /// Secondary tables listing the keys whose state satisfies a condition (runs in progress, failed runs).
    static var indexes: [ReadModelIndex<State>] { get }
    /// The stored JSON of a state (compact, sorted keys). `encoder` is the store's, for states coded by `Codable`.
    static func stored(_ state: State, encoder: JSONEncoder) throws -> [UInt8]
    /// A state read back from its stored JSON.
    static func state(stored bytes: UnsafeRawBufferPointer) throws -> State
    /// How many decoded states the store keeps between batches at most (their stored JSON is bounded too), so that
    /// the next event of a key is folded without reading its state back from LMDB.
    static var keptStates: Int { get }
    /// Whether the store keeps `state` decoded after a batch: false for a state that is unlikely to change again
    /// (a finished run), which would only take the place of one that will.
    static func keepsDecoded(_ state: State) -> Bool
}

/// A secondary table derived from a model's states: each key of the model has at most one entry there, whose key
/// and value depend on the key and its state (`entry`, nil when the state is not listed). When a state changes, the
/// store deletes the entry of the state before (when its key differs) and writes the entry of the state after, in
/// the same transaction, so an index never holds an entry of a state that is gone.
public struct ReadModelIndex<State>: Sendable {
    public let table: String
    public let entry: @Sendable (_ key: String, _ state: State) -> ReadModelIndexEntry?

    public init(table: String, entry: @escaping @Sendable (_ key: String, _ state: State) -> ReadModelIndexEntry?) {
        self.table = table
        self.entry = entry
    }

    /// The keys whose state satisfies `includes`, each under the model's own key with a small value (`value`, empty
    /// by default).
    public init(
        table: String, includes: @escaping @Sendable (State) -> Bool,
        value: @escaping @Sendable (State) -> [UInt8] = { _ in [] }
    ) {
        self.init(table: table) { key, state in
            includes(state) ? ReadModelIndexEntry(key: Array(key.utf8), value: value(state)) : nil
        }
    }
}

/// One entry of a `ReadModelIndex`.
public struct ReadModelIndexEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

extension ReadModel {
    public static var indexes: [ReadModelIndex<State>] { [] }
    public static var keptStates: Int { 1024 }
    public static func keepsDecoded(_ state: State) -> Bool { true }

    public static func evolve(_ state: inout State?, _ event: LedgerEvent, sequence: UInt64) {
        state = evolve(state.take(), event, sequence: sequence)
    }

    public static func stored(_ state: State, encoder: JSONEncoder) throws -> [UInt8] {
        Array(try encoder.encode(state))
    }

    public static func state(stored bytes: UnsafeRawBufferPointer) throws -> State {
        try JSONTree.decode(State.self, from: bytes)
    }
}

/// States coded by hand (the run status, on the hot path): written and read without `Codable`.
extension ReadModel where State: JSONWritable & JSONReadable {
    public static func stored(_ state: State, encoder: JSONEncoder) throws -> [UInt8] {
        state.jsonBytes(reserving: 2048)
    }

    public static func state(stored bytes: UnsafeRawBufferPointer) throws -> State { try State(jsonBytes: bytes) }
}

/// Run status: `run_id → RunState`, plus `runs_active`, the runs that have not finished.
public enum RunStatusModel: ReadModel {
    public static let table = "runs"
    public static let activeTable = "runs_active"
    /// The dead letters: failed runs, and succeeded runs whose webhook delivery was given up on.
    public static let failedTable = "runs_failed"
    public static var indexes: [ReadModelIndex<RunState>] {
        [
            ReadModelIndex(
                table: activeTable, includes: { !$0.isSettled }, value: { Array(($0.worker ?? "").utf8) }),
            ReadModelIndex(table: failedTable) { $0.status == .failed || $0.delivery?.isDeadLetter == true },
            ReadModelIndex(table: RunListing.byTime) { key, run in RunListing.entry(run, key: key) },
            ReadModelIndex(table: RunListing.byFlow) { key, run in
                RunListing.entry(run, key: key, prefix: RunListing.prefix(flowID: run.flow_id))
            },
            ReadModelIndex(table: RunListing.byStatus) { key, run in
                RunListing.entry(run, key: key, prefix: RunListing.prefix(status: run.status))
            },
            ReadModelIndex(table: RunListing.byFlowStatus) { key, run in
                RunListing.entry(run, key: key, prefix: RunListing.prefix(flowID: run.flow_id, status: run.status))
            },
        ]
    }

    /// The runs in progress, as many as a busy engine has in flight (runs waiting on services), so that none is
    /// read back and parsed at each of its events; a settled run is dropped (its states' JSON stays bounded too).
    public static var keptStates: Int { 16_384 }
    public static func keepsDecoded(_ state: RunState) -> Bool { !state.isSettled }

    public static func key(for event: LedgerEvent) -> String? {
        switch event.body {
        case .runStarted(let e): return e.run_id
        case .flowVersionRecorded, .flowStatusChanged, .rejected, .unhandled: return nil
        default: return event.runid
        }
    }

    public static func evolve(_ state: RunState?, _ event: LedgerEvent, sequence: UInt64) -> RunState? {
        RunState.evolve(state, event, sequence: sequence)
    }

    public static func evolve(_ state: inout RunState?, _ event: LedgerEvent, sequence: UInt64) {
        RunState.evolve(&state, event, sequence: sequence)
    }
}

/// Flow versions: `flow_id → FlowRecord` (every version, the status, who changed what and when).
public enum FlowVersionsModel: ReadModel {
    public static let table = "flows"

    public static func key(for event: LedgerEvent) -> String? {
        switch event.body {
        case .flowVersionRecorded(let e): return e.flow_id
        case .flowStatusChanged(let e): return e.flow_id
        case .other where event.runid == nil: return event.flowid
        default: return nil
        }
    }

    public static func evolve(_ state: FlowRecord?, _ event: LedgerEvent, sequence: UInt64) -> FlowRecord? {
        switch event.body {
        case .flowVersionRecorded(let e):
            var record =
                state
                ?? FlowRecord(
                    flow_id: e.flow_id, status: .draft, current_version: 0, active_version: nil, created_at: event.time,
                    updated_at: event.time, versions: [], history: [], last_sequence: sequence)
            guard !record.versions.contains(where: { $0.version == e.version }) else {
                record.last_sequence = sequence  // a repeated version changes nothing but the flow's position
                return record
            }
            record.versions.append(
                FlowVersionEntry(
                    version: e.version, definition: e.definition, definition_hash: e.definition_hash, actor: e.actor,
                    created_at: event.time, based_on: e.based_on))
            record.current_version = e.version
            record.history.append(
                FlowChange(
                    at: event.time, actor: e.actor, change: e.version == 1 ? "registered" : "new_version",
                    version: e.version,
                    status_before: state?.status, status_after: record.status, summary: e.summary))
            record.updated_at = event.time
            record.last_sequence = sequence
            return record
        case .other:
            // Skipped on the flow's subject: only its position moves.
            guard var record = state else { return nil }
            record.last_sequence = sequence
            return record
        case .flowStatusChanged(let e):
            guard var record = state else { return nil }
            let before = record.status
            record.status = e.status
            record.active_version = e.status == .active ? e.version : nil
            record.active_since = e.status == .active ? sequence : nil
            record.history.append(
                FlowChange(
                    at: event.time, actor: e.actor, change: FlowChange.change(to: e.status),
                    version: e.version,
                    status_before: before, status_after: e.status, summary: e.reason))
            record.updated_at = event.time
            record.last_sequence = sequence
            return record
        default:
            return state
        }
    }
}

/// One version of a flow: its number, definition and hash, and when and by whom it was recorded.
public struct FlowVersionEntry: Codable, Sendable, Equatable {
    public var version: Int
    public var definition: JSONValue
    public var definition_hash: String
    public var actor: String
    public var created_at: String
    public var based_on: Int?
}

/// One change of a flow's status, as its history lists it.
public struct FlowChange: Codable, Sendable, Equatable {
    static func change(to status: FlowStatus) -> String {
        switch status {
        case .active: return "activated"
        case .broken: return "marked_broken"
        case .draft, .deprecated: return "deactivated"
        }
    }

    public var at: String
    public var actor: String
    public var change: String
    public var version: Int
    public var status_before: FlowStatus?
    public var status_after: FlowStatus?
    public var summary: String?
}

/// A flow as the flow-versions read model holds it: status, versions, history and log position.
public struct FlowRecord: Codable, Sendable, Equatable {
    public var flow_id: String
    public var status: FlowStatus
    public var current_version: Int
    /// The version runs start with while the flow is active.
    public var active_version: Int?
    /// The log position of the activation that made `active_version` active: the flow triggers on inbound
    /// messages stored after it, never on older ones (however often they are delivered). Absent while inactive,
    /// and in a model folded before it was recorded (rebuild the models to have it).
    public var active_since: UInt64?
    public var created_at: String
    public var updated_at: String
    public var versions: [FlowVersionEntry]
    public var history: [FlowChange]
    /// The stream sequence of the flow's last event (the expected last subject sequence of the next change).
    public var last_sequence: UInt64

    public func version(_ n: Int) -> FlowVersionEntry? { versions.first { $0.version == n } }
    /// The version that was current when the flow was last marked broken.
    public var brokenVersion: Int? { history.last { $0.change == "marked_broken" }?.version }
    public var current: FlowVersionEntry? { version(current_version) }
}

/// Dedup: `flow_id/dedup_key → run_id`, so one signal never starts the same flow twice, however long ago.
public enum DedupModel: ReadModel {
    public static let table = "dedup"

    /// `<flow_id>/<key>`; a key longer than `Limits.dedupKeyBytes` is stored as `sha256:<hex>` of itself, so no
    /// LMDB key passes its 511-byte limit.
    public static func dedupKey(flowID: String, key: String) -> String {
        let short = key.utf8.count <= Limits.dedupKeyBytes ? key : "sha256:" + SHA256.hex(key)
        return "\(flowID)/\(short)"
    }

    public static func key(for event: LedgerEvent) -> String? {
        guard case .runStarted(let e) = event.body, let key = e.dedup_key else { return nil }
        return dedupKey(flowID: e.flow_id, key: key)
    }

    public static func evolve(_ state: String?, _ event: LedgerEvent, sequence: UInt64) -> String? {
        guard case .runStarted(let e) = event.body else { return state }
        return state ?? e.run_id  // the first run wins
    }
}

/// The tables every Ledgerflow LMDB environment has.
public enum ReadModelTables {
    public static let meta = "meta"
    public static let checkpointKey = "checkpoint"
    public static var all: [String] {
        [
            meta, RunStatusModel.table, RunStatusModel.activeTable, RunStatusModel.failedTable, FlowVersionsModel.table,
            DedupModel.table, SkippedMessage.table, AuditTrail.table, ScheduleModel.table, RunListing.byTime,
            RunListing.byFlow, RunListing.byStatus, RunListing.byFlowStatus,
        ]
    }
    /// `meta`'s key of the version of the index tables and the checkpoint of the last batch that kept them
    /// (`indexStamp`). A store whose stamp differs (one written before the run listing's indexes, which has none,
    /// or one a version without them moved on from) has its index tables derived again from the models' tables
    /// before its next batch; until then the run listing reads the `runs` table itself.
    public static let indexVersionKey = "index_version"
    /// The version of the index tables: bumped whenever an index is added or its keys change.
    public static let indexVersion = "2"
    /// `index_version`'s value when the indexes are those of this version, kept through `checkpoint` (its text).
    public static func indexStamp(checkpoint: [UInt8]) -> [UInt8] { Array("\(indexVersion) ".utf8) + checkpoint }
}
