public import Foundation
public import LedgerCore
public import LedgerLMDB
public import LedgerProjections
public import Logging
public import Synchronization

/// The LMDB read models (run status, flow versions, dedup) and the log position they reflect.
public final class ReadModelStore: Sendable {
    let environment: LMDBEnvironment
    public let progress = ProjectionProgress()
    /// Changes each time a batch touched a flow (lets caches of flows know when to reload).
    public let flowGeneration = Atomic<UInt64>(0)
    /// A failpoint for tests: called inside the write transaction after the folds and before the checkpoint, with
    /// the batch's last sequence; throwing aborts the transaction as a crash mid-batch would.
    let failpoint = LockedHook<@Sendable (UInt64) throws -> Void>()
    /// Recently written states, decoded, so a batch need not decode from LMDB what the last batch just wrote.
    /// Touched only inside write transactions (the writer's thread); cleared when a transaction aborts.
    let recent = StateCaches(byteCapacity: 64 << 20, models: 4)
    /// Messages skipped so far.
    private let skippedTotal: Counter
    /// Reports stored states that cannot be read back.
    let logger: Logger
    /// Told of every batch once it is in the read models (the engine: runs other workers moved on).
    let appliedObserver = LockedHook<@Sendable (Projector.Batch) -> Void>()

    /// Calls the observer of applied batches, if there is one.
    func notifyApplied(_ batch: Projector.Batch) {
        appliedObserver.function?(batch)
    }

    /// The map size read models open with unless told otherwise (`--lmdb-map-size`); the map grows when full.
    public static let defaultMapSize = 8 << 30

    /// Read models being rebuilt in `path`: nothing is synced to disk until `sync()` (a crash loses only the
    /// rebuild, which starts again). Its writer keeps the process's priority unless told otherwise: a rebuild has
    /// no runs of its own to give way to.
    public static func forRebuild(
        path: String, mapSize: Int = defaultMapSize, writerNiceness: Int32 = 0
    ) throws -> ReadModelStore {
        try ReadModelStore(path: path, durability: .noSync, mapSize: mapSize, writerNiceness: writerNiceness)
    }

    /// The LMDB map's size now: it starts at the size the store was opened with and doubles each time it fills,
    /// up to `maximumMapSize`.
    public var mapSize: Int { environment.mapSize }
    public var maximumMapSize: Int { environment.maximumMapSize }

    /// Opens (or creates) the read models in `path`. Everything that can fail happens before the store exists:
    /// Swift 6.3's optimizer crashes on a throwing designated initializer of this class (its noncopyable stored
    /// properties on the failure path), so the designated one does not throw.
    public convenience init(
        path: String, durability: LMDBEnvironment.Durability = .periodic(.seconds(1)), mapSize: Int = defaultMapSize,
        writerNiceness: Int32 = 0, logger: Logger = Logger(label: "ledgerflow.readmodels")
    ) throws {
        let environment = try LMDBEnvironment(
            path: path, tables: ReadModelTables.all, mapSize: mapSize, durability: durability,
            writerNiceness: writerNiceness)
        let checkpoint = try Self.checkpoint(of: environment)
        let skipped = try environment.read { txn in try txn.count(environment.table(SkippedMessage.table)) }
        self.init(environment: environment, checkpoint: checkpoint, skipped: skipped, logger: logger)
    }

    init(environment: LMDBEnvironment, checkpoint: UInt64, skipped: Int, logger: Logger) {
        self.environment = environment
        self.logger = logger
        skippedTotal = Counter(skipped)
        progress.advance(to: checkpoint)
    }

    /// The stream sequence of the last message applied.
    public func checkpoint() throws -> UInt64 { try Self.checkpoint(of: environment) }

    static func checkpoint(of environment: LMDBEnvironment) throws -> UInt64 {
        try environment.read { txn in
            try txn.withValue(environment.table(ReadModelTables.meta), key: Array(ReadModelTables.checkpointKey.utf8)) {
                raw in
                UInt64(String(decoding: raw, as: UTF8.self)) ?? 0
            } ?? 0
        }
    }

    func value<M: ReadModel>(_ model: M.Type, key: String) throws -> M.State? {
        try environment.read { txn in
            try txn.withValue(environment.table(M.table), key: Array(key.utf8)) { raw in try M.state(stored: raw) }
        }
    }

    /// How many stored states the folds had to read back from LMDB and decode since the store opened (those not
    /// kept decoded from an earlier batch).
    public var statesReadBack: Int { recent.readBack.value }

    public func run(_ id: String) throws -> RunState? { try value(RunStatusModel.self, key: id) }

    /// The run's stored JSON, handed to `body` inside the read transaction (valid only there): the query API
    /// answers with it as it is, never decoding and encoding it again.
    public func withRunJSON<R>(_ id: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try environment.read { txn in
            try txn.withValue(environment.table(RunStatusModel.table), key: Array(id.utf8), body)
        }
    }

    /// Writes what LMDB holds in memory to disk now (after a rebuild without syncs).
    public func sync() throws {
        try environment.sync()
    }
    public func flow(_ id: String) throws -> FlowRecord? { try value(FlowVersionsModel.self, key: id) }
    public func dedup(flowID: String, key: String) throws -> String? {
        try value(DedupModel.self, key: DedupModel.dedupKey(flowID: flowID, key: key))
    }

    /// A flow's schedule as the read models hold it (nil before its first firing, pause or scheduled run).
    public func schedule(_ flowID: String) throws -> ScheduleState? { try value(ScheduleModel.self, key: flowID) }

    /// Every schedule the read models hold.
    public func schedules() throws -> [ScheduleState] { try all(ScheduleModel.self) }

    public func flows() throws -> [FlowRecord] { try all(FlowVersionsModel.self) }

    /// Every value of a model's table, in key order.
    func all<M: ReadModel>(_ model: M.Type) throws -> [M.State] {
        try environment.read { txn in
            var out: [M.State] = []
            try txn.scan(environment.table(M.table)) { _, value in
                out.append(try M.state(stored: value))
                return true
            }
            return out
        }
    }

    /// Runs that have not finished, for the engine to pick up after a restart.
    public func activeRunIDs() throws -> [String] { try keys(of: RunStatusModel.activeTable) }

    /// Runs that have not finished, each with the worker driving it (nil when none is recorded).
    public func activeRuns() throws -> [(runID: String, worker: String?)] {
        try environment.read { txn in
            var out: [(String, String?)] = []
            try txn.scan(environment.table(RunStatusModel.activeTable)) { key, value in
                out.append(
                    (String(decoding: key, as: UTF8.self), value.isEmpty ? nil : String(decoding: value, as: UTF8.self))
                )
                return true
            }
            return out
        }
    }

    /// Failed runs: the dead letters.
    public func failedRunIDs() throws -> [String] { try keys(of: RunStatusModel.failedTable) }

    func keys(of table: String) throws -> [String] {
        try environment.read { txn in
            var out: [String] = []
            try txn.scan(environment.table(table)) { key, _ in
                out.append(String(decoding: key, as: UTF8.self))
                return true
            }
            return out
        }
    }

    /// Recent runs, newest first by `(created_at, run_id)`, optionally filtered by flow and status; at most `limit`.
    public func runs(flowID: String?, status: String?, limit: Int) throws -> [RunState] {
        try withRunsJSON(flowID: flowID, status: status, limit: limit) { runs in
            try runs.map { try JSONTree.decode(RunState.self, from: $0) }
        }
    }

    /// The stored JSON of the runs `runs(flowID:status:limit:)` lists, in its order, handed to `body` inside the
    /// read transaction (valid only there): the listing reads `limit` entries of an index and the runs they name,
    /// however many runs the models hold. An unknown status lists nothing.
    public func withRunsJSON<R>(
        flowID: String?, status: String?, limit: Int, _ body: ([UnsafeRawBufferPointer]) throws -> R
    ) throws -> R {
        try environment.read { txn in
            let wanted = status.map { RunStatus(rawValue: $0) }
            guard limit > 0, wanted != .some(nil) else { return try body([]) }
            let ids: [[UInt8]]
            if try Self.indexesAreCurrent(txn, environment) {
                ids = try Self.listedRunIDs(txn, environment, flowID: flowID, status: wanted ?? nil, limit: limit)
            } else {
                ids = try Self.scannedRunIDs(txn, environment, flowID: flowID, status: wanted ?? nil, limit: limit)
            }
            let table = environment.table(RunStatusModel.table)
            var runs: [UnsafeRawBufferPointer] = []
            runs.reserveCapacity(ids.count)
            for id in ids {
                // An index entry names a run of the same transaction: always there.
                if let raw = try txn.withValue(table, key: id, { $0 }) { runs.append(raw) }
            }
            return try body(runs)
        }
    }

    /// The ids of the runs listed, newest first, from the listing's index.
    static func listedRunIDs(
        _ txn: borrowing LMDBReadTransaction, _ environment: LMDBEnvironment, flowID: String?, status: RunStatus?,
        limit: Int
    ) throws -> [[UInt8]] {
        let index = RunListing.index(flowID: flowID, status: status)
        var ids: [[UInt8]] = []
        try txn.scanBackward(environment.table(index.table), prefix: index.prefix) { _, value in
            ids.append(Array(value))
            return ids.count < limit
        }
        return ids
    }

    /// The ids of the runs listed, newest first, from every run (read models written before the listing's
    /// indexes, until their next batch derives them).
    static func scannedRunIDs(
        _ txn: borrowing LMDBReadTransaction, _ environment: LMDBEnvironment, flowID: String?, status: RunStatus?,
        limit: Int
    ) throws -> [[UInt8]] {
        var out: [(created: String, id: String)] = []
        try txn.scan(environment.table(RunStatusModel.table)) { _, value in
            // A run that cannot be read is not listed (`upgradeIndexes` names it).
            guard let run = try? JSONTree.decode(RunState.self, from: value) else { return true }
            if let flowID, run.flow_id != flowID { return true }
            if let status, run.status != status { return true }
            out.append((run.created_at, run.run_id))
            return true
        }
        return out.sorted { ($0.created, $0.id) > ($1.created, $1.id) }.prefix(limit).map { Array($0.id.utf8) }
    }

    /// Whether the index tables are those of this version (`ReadModelTables.indexVersion`) and were kept by every
    /// batch up to the checkpoint: `index_version` holds the version and the checkpoint of the last batch that wrote
    /// them, so models a version without the indexes moved on from (a downgrade, then this version again) are
    /// derived again rather than trusted.
    static func indexesAreCurrent(_ txn: borrowing LMDBReadTransaction, _ environment: LMDBEnvironment) throws -> Bool {
        let meta = environment.table(ReadModelTables.meta)
        let checkpoint = try txn.withValue(meta, key: Array(ReadModelTables.checkpointKey.utf8)) { Array($0) } ?? []
        return try txn.withValue(meta, key: Array(ReadModelTables.indexVersionKey.utf8)) {
            $0.elementsEqual(ReadModelTables.indexStamp(checkpoint: checkpoint))
        } ?? false
    }

    /// Derives the index tables of read models written before this version's indexes (`ReadModelTables.indexVersion`)
    /// from their models' tables, on the writer; nothing when they are current or the models are empty (their first
    /// batch marks them). The projector calls it before it reads the log. A stored state that cannot be read is left
    /// out of the indexes and returned (the caller logs it), never stopping the upgrade.
    @discardableResult
    public func upgradeIndexes() async throws -> [UnreadableState] {
        guard try indexesNeedUpgrade() else { return [] }
        let environment = self.environment
        return try await environment.writer.write { txn in try Self.upgradeIndexes(txn, environment) }
    }

    /// Whether models were written (a checkpoint) with index tables of another version, or not kept to the
    /// checkpoint.
    func indexesNeedUpgrade() throws -> Bool {
        try environment.read { txn in
            try !Self.indexesAreCurrent(txn, environment)
                && txn.withValue(
                    environment.table(ReadModelTables.meta), key: Array(ReadModelTables.checkpointKey.utf8), { _ in }
                ) != nil
        }
    }

    /// A stored state that could not be read back: where, and why.
    public struct UnreadableState: Error, Sendable, Equatable, CustomStringConvertible {
        public var table: String
        public var key: String
        public var reason: String
        public var description: String {
            "read model table \(table), key \(key.debugDescription.prefix(200)): the stored state cannot be read "
                + "(\(reason.prefix(300))); derive the read models again from the log: ledgerflow projections rebuild"
        }
        static let logMessage = "a stored read model state cannot be read; left out of its indexes"
    }

    /// Inside a write transaction: when the index tables are not current (`indexesAreCurrent`), empties them,
    /// writes every model's entries again from its table, and records the version. The entries depend on the states
    /// alone, so they equal those a replay of the log writes. Returns the states it could not read (left out).
    @discardableResult
    static func upgradeIndexes(
        _ txn: borrowing LMDBWriteTransaction, _ environment: LMDBEnvironment
    ) throws
        -> [UnreadableState]
    {
        let meta = environment.table(ReadModelTables.meta)
        let checkpoint = try txn.withValue(meta, key: Array(ReadModelTables.checkpointKey.utf8)) { Array($0) } ?? []
        let stamp = ReadModelTables.indexStamp(checkpoint: checkpoint)
        let versionKey = Array(ReadModelTables.indexVersionKey.utf8)
        guard try txn.withValue(meta, key: versionKey, { $0.elementsEqual(stamp) }) != true else { return [] }
        var unreadable: [UnreadableState] = []
        try reindex(RunStatusModel.self, txn, environment, &unreadable)
        try reindex(FlowVersionsModel.self, txn, environment, &unreadable)
        try reindex(DedupModel.self, txn, environment, &unreadable)
        try reindex(ScheduleModel.self, txn, environment, &unreadable)
        try txn.put(meta, key: versionKey, value: stamp)
        return unreadable
    }

    /// Empties a model's index tables and writes each of its states' entries again, a chunk of states at a time
    /// (nothing is written while the cursor reads).
    static func reindex<M: ReadModel>(
        _ model: M.Type, _ txn: borrowing LMDBWriteTransaction, _ environment: LMDBEnvironment,
        _ unreadable: inout [UnreadableState]
    ) throws {
        let indexes = M.indexes
        guard !indexes.isEmpty else { return }
        for index in indexes { try txn.clear(environment.table(index.table)) }
        let table = environment.table(M.table)
        var from: [UInt8]?
        while true {
            var chunk: [(table: String, entry: ReadModelIndexEntry)] = []
            var last: [UInt8]?
            var read = 0
            try txn.scan(table, from: from) { key, value in
                let name = String(decoding: key, as: UTF8.self)
                last = Array(key)
                read += 1
                do {
                    let state = try M.state(stored: value)
                    for index in indexes {
                        if let entry = index.entry(name, state) { chunk.append((index.table, entry)) }
                    }
                } catch {
                    unreadable.append(UnreadableState(table: M.table, key: name, reason: "\(error)"))
                }
                return read < 1024
            }
            for (name, entry) in chunk {
                try txn.put(environment.table(name), key: entry.key, value: entry.value)
            }
            guard let last, read == 1024 else { return }
            from = last + [0]  // the least key after `last`
        }
    }

    /// Every key and value of every table, for comparing a rebuild with the live models.
    public func dump() throws -> [String: [(key: [UInt8], value: [UInt8])]] {
        try environment.read { txn in
            var out: [String: [(key: [UInt8], value: [UInt8])]] = [:]
            for name in ReadModelTables.all {
                var rows: [(key: [UInt8], value: [UInt8])] = []
                try txn.scan(environment.table(name)) { k, v in
                    rows.append((Array(k), Array(v)))
                    return true
                }
                out[name] = rows
            }
            return out
        }
    }

    /// Applies a batch in one write transaction together with the new checkpoint, so each message is applied
    /// exactly once across crashes. When LMDB refuses the batch for its data (not for a transient reason), the
    /// batch is applied again one event per transaction and an event LMDB refuses on its own is skipped and
    /// recorded: the outcome depends on the event alone, so a rebuild skips the same events.
    @discardableResult
    public func apply(_ batch: Projector.Batch) async throws -> [SkippedMessage] {
        do {
            try await write(batch.events, skipped: batch.skipped, through: batch.through)
            return batch.skipped
        } catch let error as LMDBError where error.isRefusedData {
            var pending = batch.skipped
            var recorded: [SkippedMessage] = []
            for (index, entry) in batch.events.enumerated() {
                let last = index == batch.events.count - 1
                let through = last ? batch.through : entry.sequence
                var rows = pending.filter { $0.sequence <= through }
                pending.removeAll { $0.sequence <= through }
                do {
                    try await write([entry], skipped: rows, through: through)
                } catch let error as LMDBError where error.isRefusedData {
                    let subject =
                        entry.event.runid.map(Subjects.run) ?? entry.event.flowid.map(Subjects.flow) ?? "ledger"
                    rows.append(
                        SkippedMessage(
                            sequence: entry.sequence, subject: subject,
                            reason: "LMDB refused the change: \(error.message)"))
                    try await write([], skipped: rows, through: through)
                }
                recorded += rows
            }
            if !pending.isEmpty || batch.events.isEmpty {
                try await write([], skipped: pending, through: batch.through)
                recorded += pending
            }
            return recorded
        }
    }

    /// Applies events (already decoded) through `through`, without skips (tests and benchmarks).
    public func apply(_ events: [(sequence: UInt64, event: LedgerEvent)], through: UInt64) async throws {
        try await write(events, skipped: [], through: through)
    }

    /// Messages of the log the read models skipped, oldest first.
    public func skipped(limit: Int = 100) throws -> [SkippedMessage] {
        try environment.read { txn in
            var out: [SkippedMessage] = []
            try txn.scan(environment.table(SkippedMessage.table)) { _, value in
                if let row = try? JSONTree.decode(SkippedMessage.self, from: value) { out.append(row) }
                return out.count < limit
            }
            return out
        }
    }

    /// How many messages the read models skipped.
    public var skippedCount: Int { skippedTotal.current }

    func write(
        _ events: [(sequence: UInt64, event: LedgerEvent)], skipped: [SkippedMessage], through: UInt64
    ) async throws {
        let touchedFlows = events.contains { FlowVersionsModel.key(for: $0.event) != nil }
        let environment = self.environment
        let failpoint = self.failpoint.function
        let recent = self.recent
        let logger = self.logger
        // A transaction that does not commit (a failure, or a full map, which grows and writes the batch again)
        // leaves the cache holding states that were never committed: drop them.
        // What the transaction found is logged once it committed: LMDB runs it again after growing a full map.
        let (added, unreadable) = try await environment.writer.write(aborted: { recent.clear() }) {
            txn -> (Int, [String]) in
            let current =
                try txn.withValue(
                    environment.table(ReadModelTables.meta), key: Array(ReadModelTables.checkpointKey.utf8)
                ) { raw in
                    UInt64(String(decoding: raw, as: UTF8.self)) ?? 0
                } ?? 0
            // A batch at or behind the checkpoint was applied before (a retried batch after a crash or reconnect).
            // (Copied only when some were: each copy of an event retains all it holds.)
            let fresh = events.contains { $0.sequence <= current } ? events.filter { $0.sequence > current } : events
            guard through > current else { return (0, []) }
            let unreadable = try ReadModelStore.upgradeIndexes(txn, environment)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var added = 0
            try ReadModelStore.audit(fresh, txn, environment, encoder)
            try ReadModelStore.fold(
                RunStatusModel.self, fresh, txn, environment, encoder, recent.cache(RunStatusModel.self))
            try ReadModelStore.fold(
                FlowVersionsModel.self, fresh, txn, environment, encoder, recent.cache(FlowVersionsModel.self))
            try ReadModelStore.fold(DedupModel.self, fresh, txn, environment, encoder, recent.cache(DedupModel.self))
            try ReadModelStore.fold(
                ScheduleModel.self, fresh, txn, environment, encoder, recent.cache(ScheduleModel.self))
            for row in skipped where row.sequence > current {
                try txn.put(
                    environment.table(SkippedMessage.table), key: Array(row.key.utf8),
                    value: Array(try encoder.encode(row)))
                added += 1
            }
            try failpoint?(through)
            let checkpoint = Array(String(through).utf8)
            try txn.put(
                environment.table(ReadModelTables.meta), key: Array(ReadModelTables.checkpointKey.utf8),
                value: checkpoint)
            // The indexes were kept by this batch too.
            try txn.put(
                environment.table(ReadModelTables.meta), key: Array(ReadModelTables.indexVersionKey.utf8),
                value: ReadModelTables.indexStamp(checkpoint: checkpoint))
            return (added, unreadable.map { "\($0)" })
        }
        for row in unreadable { logger.error("\(UnreadableState.logMessage)", metadata: [LogKey.error: "\(row)"]) }
        if touchedFlows { flowGeneration.add(1, ordering: .relaxed) }
        if added > 0 { skippedTotal.add(added) }
        progress.advance(to: through)
    }

    /// Appends the audit trail's entries of the batch. Flow events need the flow as it was before each of them:
    /// read once per flow from the table (not yet folded for this batch) and evolved through the batch here.
    static func audit(
        _ events: [(sequence: UInt64, event: LedgerEvent)], _ txn: borrowing LMDBWriteTransaction,
        _ environment: LMDBEnvironment, _ encoder: JSONEncoder
    ) throws {
        var flows: [String: FlowRecord?] = [:]
        let table = environment.table(AuditTrail.table)
        for position in events.indices {
            let sequence = events[position].sequence
            var before: FlowRecord?
            if let flowID = AuditTrail.needsFlow(events[position].event) {
                if let known = flows[flowID] {
                    before = known
                } else {
                    before = try txn.withValue(environment.table(FlowVersionsModel.table), key: Array(flowID.utf8)) {
                        try JSONTree.decode(FlowRecord.self, from: $0)
                    }
                }
                flows[flowID] = .some(FlowVersionsModel.evolve(before, events[position].event, sequence: sequence))
            }
            guard let entry = AuditTrail.entry(events[position].event, sequence: sequence, flow: before) else {
                continue
            }
            try txn.put(table, key: Array(AuditTrail.key(sequence).utf8), value: Array(try encoder.encode(entry)))
        }
    }

    /// The audit trail, newest first: entries about `flowID`, by `actor` (its id, or `type:id`), at or after
    /// `since`, at most `limit`.
    public func audit(flowID: String?, actor: String?, since: Date?, limit: Int) throws -> [AuditEntry] {
        try environment.read { txn in
            var out: [AuditEntry] = []
            try txn.scanBackward(environment.table(AuditTrail.table)) { _, value in
                guard let entry = try? JSONTree.decode(AuditEntry.self, from: value) else { return true }
                // Entries are in log order; their times come from the clocks of whoever recorded them, so an older
                // time is skipped, not taken as the end.
                if let since, let at = Timestamp.parse(entry.at), at < since { return true }
                if let flowID, entry.flow_id != flowID { return true }
                if let actor, entry.actor.id != actor, "\(entry.actor.type):\(entry.actor.id)" != actor { return true }
                out.append(entry)
                return out.count < limit
            }
            return out
        }
    }

    /// Folds one model over the batch: each key is read once, evolved in place through all its events, written once.
    static func fold<M: ReadModel>(
        _ model: M.Type, _ events: [(sequence: UInt64, event: LedgerEvent)], _ txn: borrowing LMDBWriteTransaction,
        _ environment: LMDBEnvironment, _ encoder: JSONEncoder, _ recent: StateCache<M.State>
    ) throws {
        let table = environment.table(M.table)
        let indexes = M.indexes
        // Each key's state, held only here while the batch changes it (taken out of the cache, not copied).
        var states: [String: M.State?] = [:]
        // The index entries of each key's state as stored before the batch: those to replace.
        var before: [String: [ReadModelIndexEntry?]] = [:]
        var order: [String] = []
        // By index, so that no event is copied (each copy retains all it holds).
        for position in events.indices {
            guard let key = M.key(for: events[position].event) else { continue }
            // Looked up by index: `states[key] == nil` would copy the state out (retaining all it holds) to compare.
            if states.index(forKey: key) == nil {
                var loaded = recent.take(key)
                if loaded == nil {
                    loaded = try txn.withValue(table, key: Array(key.utf8)) { raw in
                        recent.noteReadBack()
                        do {
                            return try M.state(stored: raw)
                        } catch {
                            // Not the event's fault: the models are damaged, and only a rebuild mends them.
                            throw UnreadableState(table: M.table, key: key, reason: "\(error)")
                        }
                    }
                }
                if !indexes.isEmpty, let loaded {
                    before[key] = indexes.map { $0.entry(key, loaded) }
                }
                states[key] = .some(loaded)
                order.append(key)
            }
            M.evolve(&states[key]!, events[position].event, sequence: events[position].sequence)
        }
        for key in order {
            let keyBytes = Array(key.utf8)
            let state = states.removeValue(forKey: key) ?? nil
            if let state {
                let value = try M.stored(state, encoder: encoder)
                try txn.put(table, key: keyBytes, value: value)
                recent.set(key, M.keepsDecoded(state) ? state : nil, bytes: value.count)
            } else {
                recent.set(key, nil, bytes: 0)
                try txn.delete(table, key: keyBytes)
            }
            guard !indexes.isEmpty else { continue }
            let previous = before[key]
            for (position, index) in indexes.enumerated() {
                let old = previous?[position] ?? nil
                let new = state.flatMap { index.entry(key, $0) }
                guard old != new else { continue }
                if let old, old.key != new?.key { try txn.delete(environment.table(index.table), key: old.key) }
                if let new { try txn.put(environment.table(index.table), key: new.key, value: new.value) }
            }
        }
    }
}
