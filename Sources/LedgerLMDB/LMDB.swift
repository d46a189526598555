import CLMDB
import Dispatch
import Foundation
import Synchronization

/// An LMDB error: the C return code and `mdb_strerror`'s text.
public struct LMDBError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var file: String
    public var line: Int

    init(_ code: Int32, _ context: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = "\(context): \(String(cString: mdb_strerror(code)))"
        self.file = file
        self.line = line
    }

    public var description: String { "LMDB error \(code): \(message)" }
    /// The map is full (the environment grows its map by itself up to its maximum; see `LMDBEnvironment`).
    public var isMapFull: Bool { code == MDB_MAP_FULL }
    /// Another process grew the map: adopt its size and begin again.
    var isMapResized: Bool { code == MDB_MAP_RESIZED }
    /// The data itself is refused (a key over 511 bytes, an empty key): writing it again fails again.
    public var isRefusedData: Bool { code == MDB_BAD_VALSIZE || code == EINVAL }
}

@inline(__always)
func check(_ code: Int32, _ context: @autoclosure () -> String, file: String = #fileID, line: Int = #line) throws {
    if code != 0 { throw LMDBError(code, context(), file: file, line: line) }
}

/// A named table (an LMDB "database") of an environment.
public struct LMDBTable: Sendable, Hashable {
    public let name: String
    let dbi: MDB_dbi
}

/// One LMDB environment (one `MDB_env*`, closed in `deinit`), opened with `MDB_NOTLS` because Swift tasks hop
/// threads. Reads run anywhere; every write goes through `writer`, which owns a thread of its own.
///
/// The map (the file's window in memory, which bounds how large the data may grow) starts at the size given and
/// grows when full: the writer doubles it, up to `maximumMapSize`, and writes the refused transaction again.
/// LMDB may change the map size only while no transaction of this process is open, so read transactions share
/// `mapLock` and the writer takes it alone, between its own transactions, to grow the map.
public final class LMDBEnvironment: @unchecked Sendable {
    let env: OpaquePointer
    public let path: String
    private let tables: [String: LMDBTable]
    /// The one writer of this environment.
    public private(set) var writer: LMDBWriter!
    /// Held shared by every read transaction, alone while the map size changes.
    let mapLock = MapLock()
    /// (A class holding the mutex: a noncopyable stored property on this throwing initializer's failure path
    /// crashes Swift 6.3's optimizer; see `ReadModelStore.init`.)
    private let currentMapSize = SizeBox()
    /// The size the map may grow to.
    public let maximumMapSize: Int
    /// The map's size now (it grows when full).
    public var mapSize: Int { currentMapSize.value.withLock { $0 } }
    /// The largest map an environment grows to unless it was opened larger: 1 TiB.
    public static let defaultMaximumMapSize = 1 << 40

    public enum Durability: Sendable, Equatable {
        /// fsync on every commit (one commit carries a whole batch).
        case syncEachCommit
        /// No fsync at commit; the writer has the pages flushed to disk about `interval` after a commit (group
        /// commit; a thread of its own syncs while the writer goes on, so a commit made during a sync waits for the
        /// next one, at most `interval` plus two syncs).
        /// A process crash loses nothing (the pages are in the OS); an OS crash can lose the last interval,
        /// which the projector re-applies from the log.
        case periodic(Duration)
        /// No fsync at commit; call `sync()` when done (rebuilds into scratch directories).
        case noSync
    }

    /// Opens (creating when missing) the environment in directory `path` with the named tables, its map
    /// `mapSize` bytes at first (rounded up to whole pages; at least what the data already takes), growing up to
    /// `maximumMapSize` (at least `mapSize`). The writer's thread runs `writerNiceness` below the process's
    /// priority (see `LMDBWriter`).
    public init(
        path: String, tables names: [String], mapSize: Int = 4 << 30, maximumMapSize: Int = defaultMaximumMapSize,
        durability: Durability = .syncEachCommit, writerNiceness: Int32 = 0
    )
        throws
    {
        guard mapSize > 0 else {
            throw LMDBError(EINVAL, "opening LMDB at \(path): a map size of \(mapSize) bytes; give a positive size")
        }
        let page = max(4096, sysconf(Int32(_SC_PAGESIZE)))
        let requested = (mapSize + page - 1) / page * page
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "creating the LMDB environment")
        guard let env else { throw LMDBError(EINVAL, "creating the LMDB environment") }
        var ok = false
        defer { if !ok { mdb_env_close(env) } }
        try check(mdb_env_set_mapsize(env, requested), "setting the map size to \(requested) bytes")
        try check(mdb_env_set_maxdbs(env, MDB_dbi(max(names.count, 1) + 2)), "setting the table count")
        try check(mdb_env_set_maxreaders(env, 254), "setting the reader count")
        var flags = UInt32(MDB_NOTLS) | UInt32(MDB_NOMETASYNC)
        if durability != .syncEachCommit { flags |= UInt32(MDB_NOSYNC) }
        // Read models hold users' data: readable by the owner only (files 0600 in a 0700 directory).
        chmod(path, 0o700)
        try check(mdb_env_open(env, path, flags, 0o600), "opening LMDB at \(path)")
        for file in ["data.mdb", "lock.mdb"] { chmod("\(path)/\(file)", 0o600) }  // files made by older versions
        var opened: [String: LMDBTable] = [:]
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn), "opening the tables")
        for name in names {
            var dbi: MDB_dbi = 0
            let rc = mdb_dbi_open(txn, name, UInt32(MDB_CREATE), &dbi)
            if rc != 0 {
                mdb_txn_abort(txn)
                throw LMDBError(rc, "opening table \(name)")
            }
            opened[name] = LMDBTable(name: name, dbi: dbi)
        }
        try check(mdb_txn_commit(txn), "opening the tables")
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info), "reading the map size")
        self.env = env
        self.path = path
        self.tables = opened
        self.maximumMapSize = max(maximumMapSize, info.me_mapsize)
        ok = true
        currentMapSize.value.withLock { $0 = info.me_mapsize }
        self.writer = try LMDBWriter(environment: self, durability: durability, niceness: writerNiceness)
    }

    deinit {
        writer?.stop()  // nil when the writer could not start
        _ = mdb_env_sync(env, 1)  // commits made without fsync reach the disk before closing
        mdb_env_close(env)
    }

    /// The table named `name` (one of those given at open).
    public func table(_ name: String) -> LMDBTable {
        guard let table = tables[name] else { preconditionFailure("LMDB table \(name) was not opened") }
        return table
    }

    /// Runs `body` in a read-only transaction; values are valid only inside it, so decode them there. `body` must
    /// not open another transaction (it would wait on `mapLock` behind a writer growing the map, which waits on it).
    @available(*, noasync, message: "a transaction must not cross an await; use it in a synchronous function")
    public func read<R>(_ body: (borrowing LMDBReadTransaction) throws -> R) throws -> R {
        var resized = false
        while true {
            do {
                return try mapLock.shared {
                    var txn: OpaquePointer?
                    try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "beginning a read transaction")
                    let transaction = LMDBReadTransaction(txn: txn!)
                    return try body(transaction)
                }
            } catch let error as LMDBError where error.isMapResized && !resized {
                resized = true
                try adoptMapSize()
            }
        }
    }

    /// Another process grew the map beyond this one's: take its size (LMDB reads it from the file).
    func adoptMapSize() throws {
        try mapLock.exclusive {
            try check(mdb_env_set_mapsize(env, 0), "adopting the map size another process set")
            var info = MDB_envinfo()
            if mdb_env_info(env, &info) == 0 { currentMapSize.value.withLock { $0 = max($0, info.me_mapsize) } }
        }
    }

    /// Doubles the map (up to `maximumMapSize`) after a write found it full; called by the writer between its
    /// transactions. Throws when the map is at its maximum already.
    func growMap(after error: LMDBError) throws {
        let current = mapSize
        guard current < maximumMapSize else {
            throw LMDBError(
                MDB_MAP_FULL,
                "the read models in \(path) need more than the largest map allowed (\(current) bytes): start with a larger --lmdb-map-size (env LEDGERFLOW_LMDB_MAP_SIZE), or free disk space and rebuild them",
                file: error.file, line: error.line)
        }
        let next = current > maximumMapSize / 2 ? maximumMapSize : current * 2
        try mapLock.exclusive {
            try check(mdb_env_set_mapsize(env, next), "growing the map of \(path) to \(next) bytes")
        }
        currentMapSize.value.withLock { $0 = next }
    }

    /// Flushes everything to disk (after `noSync` writes).
    public func sync() throws {
        if Self.syncReadsTheMap {
            try mapLock.shared { try check(mdb_env_sync(env, 1), "syncing \(path)") }
        } else {
            try check(mdb_env_sync(env, 1), "syncing \(path)")
        }
    }

    /// Whether `mdb_env_sync` reads the map, so that it must not run while the map grows. LMDB 0.9's, without
    /// MDB_WRITEMAP (never set here), is an fdatasync of the data file and nothing else, which growing the map leaves
    /// alone: it takes no lock, so a growth (and the reads queued behind it) never waits for the disk. Later versions
    /// read the meta page through the map first.
    static let syncReadsTheMap: Bool = {
        var major: Int32 = 0
        var minor: Int32 = 0
        var patch: Int32 = 0
        _ = mdb_version(&major, &minor, &patch)
        return !(major == 0 && minor == 9)
    }()

    /// Copies the environment to `path` compacted (a consistent snapshot).
    public func copy(to path: String) throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try mapLock.shared {  // the copy reads in a transaction of its own
            try check(mdb_env_copy2(env, path, UInt32(MDB_CP_COMPACT)), "copying \(self.path) to \(path)")
        }
    }
}

/// A read-only transaction; aborted when it goes out of scope, and never passed across an await.
public struct LMDBReadTransaction: ~Copyable {
    let txn: OpaquePointer

    deinit { mdb_txn_abort(txn) }

    /// The value of `key`, handed to `body` while it is valid; nil when absent.
    public func withValue<R>(
        _ table: LMDBTable, key: some Collection<UInt8>, _ body: (UnsafeRawBufferPointer) throws -> R
    )
        throws -> R?
    {
        try lmdbGet(txn, table, key, body)
    }

    /// The value of `key` copied out, or nil.
    public func get(_ table: LMDBTable, key: some Collection<UInt8>) throws -> [UInt8]? {
        try withValue(table, key: key) { Array($0) }
    }

    /// Visits keys in order starting at `from` (or the first key); `body` returns false to stop.
    public func scan(
        _ table: LMDBTable, from: [UInt8]? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try lmdbScan(txn, table, from: from, body)
    }

    /// Visits keys from the last to the first; `body` returns false to stop.
    public func scanBackward(
        _ table: LMDBTable, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try lmdbScan(txn, table, from: nil, backward: true, body)
    }

    /// Visits the keys that begin with `prefix`, from the last to the first (the cursor starts at the end of the
    /// prefix's range, never walking the keys after it); `body` returns false to stop.
    public func scanBackward(
        _ table: LMDBTable, prefix: [UInt8], _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try lmdbScanBackward(txn, table, prefix: prefix, body)
    }

    /// Number of entries in `table`.
    public func count(_ table: LMDBTable) throws -> Int {
        try lmdbCount(txn, table)
    }
}

/// A write transaction: committed by `LMDBWriter.write` when its body returns, aborted when it throws.
public struct LMDBWriteTransaction: ~Copyable {
    let txn: OpaquePointer

    public func withValue<R>(
        _ table: LMDBTable, key: some Collection<UInt8>, _ body: (UnsafeRawBufferPointer) throws -> R
    )
        throws -> R?
    {
        try lmdbGet(txn, table, key, body)
    }

    public func get(_ table: LMDBTable, key: some Collection<UInt8>) throws -> [UInt8]? {
        try withValue(table, key: key) { Array($0) }
    }

    public func put(_ table: LMDBTable, key: some Collection<UInt8>, value: some Collection<UInt8>) throws {
        let keyBytes = Array(key)
        let valueBytes = Array(value)
        try keyBytes.withUnsafeBytes { k in
            try valueBytes.withUnsafeBytes { v in
                var mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var mv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                try check(mdb_put(txn, table.dbi, &mk, &mv, 0), "writing to \(table.name)")
            }
        }
    }

    /// Deletes `key`; returns false when it was absent.
    @discardableResult
    public func delete(_ table: LMDBTable, key: some Collection<UInt8>) throws -> Bool {
        let keyBytes = Array(key)
        return try keyBytes.withUnsafeBytes { k in
            var mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            let rc = mdb_del(txn, table.dbi, &mk, nil)
            if rc == MDB_NOTFOUND { return false }
            try check(rc, "deleting from \(table.name)")
            return true
        }
    }

    /// Empties `table`.
    public func clear(_ table: LMDBTable) throws {
        try check(mdb_drop(txn, table.dbi, 0), "emptying \(table.name)")
    }

    public func scan(
        _ table: LMDBTable, from: [UInt8]? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try lmdbScan(txn, table, from: from, body)
    }

    public func count(_ table: LMDBTable) throws -> Int {
        try lmdbCount(txn, table)
    }
}

private func lmdbGet<R>(
    _ txn: OpaquePointer, _ table: LMDBTable, _ key: some Collection<UInt8>,
    _ body: (UnsafeRawBufferPointer) throws -> R
) throws -> R? {
    let keyBytes = Array(key)
    return try keyBytes.withUnsafeBytes { k in
        var mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
        var mv = MDB_val()
        let rc = mdb_get(txn, table.dbi, &mk, &mv)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "reading from \(table.name)")
        return try body(UnsafeRawBufferPointer(start: mv.mv_data, count: mv.mv_size))
    }
}

/// Visits keys in order from `from` (or the first key), or from the last key backwards; `body` returns false to stop.
private func lmdbScan(
    _ txn: OpaquePointer, _ table: LMDBTable, from: [UInt8]?, backward: Bool = false,
    _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
) throws {
    var cursor: OpaquePointer?
    try check(mdb_cursor_open(txn, table.dbi, &cursor), "opening a cursor on \(table.name)")
    defer { mdb_cursor_close(cursor) }
    var mk = MDB_val()
    var mv = MDB_val()
    var rc: Int32
    let start = from ?? []
    if from != nil {
        rc = start.withUnsafeBytes { k in
            mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            return mdb_cursor_get(cursor, &mk, &mv, MDB_SET_RANGE)
        }
    } else {
        rc = mdb_cursor_get(cursor, &mk, &mv, backward ? MDB_LAST : MDB_FIRST)
    }
    while rc == 0 {
        let keep = try body(
            UnsafeRawBufferPointer(start: mk.mv_data, count: mk.mv_size),
            UnsafeRawBufferPointer(start: mv.mv_data, count: mv.mv_size))
        if !keep { return }
        rc = mdb_cursor_get(cursor, &mk, &mv, backward ? MDB_PREV : MDB_NEXT)
    }
    if rc != MDB_NOTFOUND { try check(rc, "scanning \(table.name)") }
}

/// Visits the keys beginning with `prefix` from the last to the first: the cursor seeks the first key past the
/// prefix's range (`MDB_SET_RANGE` on the least key greater than every key with the prefix) and steps back from it.
private func lmdbScanBackward(
    _ txn: OpaquePointer, _ table: LMDBTable, prefix: [UInt8],
    _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
) throws {
    var cursor: OpaquePointer?
    try check(mdb_cursor_open(txn, table.dbi, &cursor), "opening a cursor on \(table.name)")
    defer { mdb_cursor_close(cursor) }
    var mk = MDB_val()
    var mv = MDB_val()
    var rc: Int32
    // The prefix without its trailing 0xFF bytes, its last byte plus one; none when it is all 0xFF (or empty).
    var bound = prefix
    while bound.last == 0xFF { bound.removeLast() }
    if bound.isEmpty {
        rc = mdb_cursor_get(cursor, &mk, &mv, MDB_LAST)
    } else {
        bound[bound.count - 1] += 1
        rc = bound.withUnsafeBytes { k in
            mk = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            return mdb_cursor_get(cursor, &mk, &mv, MDB_SET_RANGE)
        }
        if rc == 0 {
            rc = mdb_cursor_get(cursor, &mk, &mv, MDB_PREV)
        } else if rc == MDB_NOTFOUND {
            rc = mdb_cursor_get(cursor, &mk, &mv, MDB_LAST)
        }
    }
    while rc == 0 {
        let key = UnsafeRawBufferPointer(start: mk.mv_data, count: mk.mv_size)
        guard key.starts(with: prefix) else { break }
        if !(try body(key, UnsafeRawBufferPointer(start: mv.mv_data, count: mv.mv_size))) { return }
        rc = mdb_cursor_get(cursor, &mk, &mv, MDB_PREV)
    }
    if rc != 0 && rc != MDB_NOTFOUND { try check(rc, "scanning \(table.name)") }
}

private func lmdbCount(_ txn: OpaquePointer, _ table: LMDBTable) throws -> Int {
    var stat = MDB_stat()
    try check(mdb_stat(txn, table.dbi, &stat), "counting \(table.name)")
    return stat.ms_entries
}

/// The single writer of an environment: write transactions run one at a time on a thread of its own, so a blocking
/// commit (fsync) never occupies Swift's cooperative pool.
///
/// The thread runs `niceness` steps below the process's priority (Linux keeps a nice value per thread): when both
/// cores are busy, the runs' own work (deciding a step, its append, the acknowledgement) goes first and the read
/// models catch up a moment later with a larger batch; on idle cores it changes nothing.
public final class LMDBWriter: @unchecked Sendable {
    private weak var environment: LMDBEnvironment?
    private let inbox = WriterInbox()
    /// The periodic fsync, on a thread of its own (nil without one: `durability` syncs at each commit, or never).
    let syncer: BackgroundSync?

    /// Starts the writer's thread; `niceness` (0 to 19) is added to the process's nice value for it alone.
    init(environment: LMDBEnvironment, durability: LMDBEnvironment.Durability, niceness: Int32) throws {
        let interval: Duration? = if case .periodic(let every) = durability { every } else { nil }
        self.environment = environment
        let niceness = min(max(niceness, 0), 19)
        let inbox = self.inbox
        // The writer asks for the sync when it is due and goes on with the next transaction: a commit never waits
        // behind an fdatasync (20–80 ms under load here, the largest wait in the single-run latency's tail).
        var made: BackgroundSync?
        if interval != nil {
            made = BackgroundSync(name: "lmdb-sync") { [weak environment] in
                guard let environment else { return }
                if LMDBEnvironment.syncReadsTheMap {
                    environment.mapLock.shared { _ = mdb_env_sync(environment.env, 1) }
                } else {
                    _ = mdb_env_sync(environment.env, 1)
                }
            }
            guard made != nil else {
                throw LMDBError(
                    EAGAIN,
                    "starting the LMDB sync thread for \(environment.path): it did not start within 30 s (is the process at its thread limit, ulimit -u?)"
                )
            }
        }
        let syncer = made
        self.syncer = syncer
        let started = DispatchSemaphore(value: 0)
        let thread = Thread {
            started.signal()
            _ = ledgerflow_name_thread("lmdb-writer")  // for ps, top and perf
            if niceness > 0 {
                // Relative to the process: who = 0 is the calling thread on Linux. Failing leaves it as it was.
                let base = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, min(base + niceness, 19))
            }
            inbox.serve(syncEvery: interval) { syncer?.request() }
        }
        thread.start()
        // Foundation does not say when the thread could not be created (the process at its thread limit): the writes
        // would wait for ever. Opening fails instead, saying why.
        if started.wait(timeout: .now() + .seconds(30)) == .timedOut {
            inbox.stop()
            syncer?.stop()
            throw LMDBError(
                EAGAIN,
                "starting the LMDB writer thread for \(environment.path): it did not start within 30 s (is the process at its thread limit, ulimit -u?)"
            )
        }
    }

    /// Lets the thread end once the jobs given before are done, and ends the sync's thread once the sync running (if
    /// any) is done (the environment is closing; it syncs once more itself).
    func stop() {
        inbox.stop()
        syncer?.stop()
    }

    /// Runs `body` in a write transaction on the writer thread; commits when it returns, aborts when it throws.
    /// When the map is full, the map grows and `body` runs again in a new transaction (up to the environment's
    /// maximum map size), so `body` must start from what the transaction reads; `aborted` runs on the writer thread
    /// after each transaction that did not commit (to drop what `body` remembered of it).
    public func write<R: Sendable>(
        aborted: (@Sendable () -> Void)? = nil,
        _ body: @escaping @Sendable (borrowing LMDBWriteTransaction) throws -> R
    ) async throws
        -> R
    {
        try await withCheckedThrowingContinuation { continuation in
            inbox.post { continuation.resume(with: Result { try self.transact(body, aborted: aborted) }) }
        }
    }

    /// Runs a write transaction on the writer thread and waits for it, for tools that are not async. `body` runs on
    /// that thread, not the caller's (whose thread-locals and actor it does not see); calling this from inside a
    /// write (on the writer's thread) would wait for ever, so it stops the process. The map grows when full, as
    /// with `write`.
    @available(*, noasync)
    public func writeSynchronously<R>(_ body: (borrowing LMDBWriteTransaction) throws -> R) throws -> R {
        precondition(!inbox.isServingThread, "writeSynchronously called inside a write, on the LMDB writer's thread")
        return try withoutActuallyEscaping(body) { body in
            // The job holds the body only until it ran: it must not outlive this call.
            let call = SynchronousWrite(body)
            inbox.post {
                call.result = Result { try self.transact(call.body!, aborted: nil) }
                call.body = nil
                call.done.signal()
            }
            call.done.wait()
            return try call.result!.get()
        }
    }

    /// On the writer's thread: one write transaction of the environment, unless it was closed.
    private func transact<R>(
        _ body: (borrowing LMDBWriteTransaction) throws -> R, aborted: (() -> Void)?
    ) throws -> R {
        guard let environment else { throw LMDBError(EINVAL, "the environment was closed") }
        return try LMDBWriter.writeNow(environment, body, aborted: aborted)
    }

    /// Writes, growing the map and writing again while it is full. Runs on the writer's thread (no other write
    /// transaction of this environment is open, so only read transactions need waiting for).
    private static func writeNow<R>(
        _ environment: LMDBEnvironment, _ body: (borrowing LMDBWriteTransaction) throws -> R,
        aborted: (() -> Void)?
    ) throws -> R {
        var resized = false
        while true {
            do {
                return try writeOnce(environment.env, body)
            } catch let error as LMDBError where error.isMapFull {
                aborted?()
                try environment.growMap(after: error)
            } catch let error as LMDBError where error.isMapResized && !resized {
                resized = true
                aborted?()
                try environment.adoptMapSize()
            } catch {
                aborted?()
                throw error
            }
        }
    }

    private static func writeOnce<R>(
        _ env: OpaquePointer, _ body: (borrowing LMDBWriteTransaction) throws -> R
    ) throws -> R {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn), "beginning a write transaction")
        let transaction = LMDBWriteTransaction(txn: txn!)
        let result: R
        do {
            result = try body(transaction)
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        try check(mdb_txn_commit(txn), "committing")  // the transaction is freed whether or not it committed
        return result
    }
}

/// A write handed to the writer's thread by a caller that waits for it (`writeSynchronously`).
private final class SynchronousWrite<R>: @unchecked Sendable {
    var body: ((borrowing LMDBWriteTransaction) throws -> R)?
    var result: Result<R, any Error>?
    let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping (borrowing LMDBWriteTransaction) throws -> R) { self.body = body }
}

/// The writer thread's queue of jobs, and the clock of its group commit: an fsync follows each commit within the
/// interval (one for every commit until then), timed on the monotonic clock.
final class WriterInbox: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var stopped = false
        /// The thread serving the jobs, once it started.
        var server: pthread_t?
    }
    private let state = Mutex(State())
    /// Signalled once per job posted and once at stop; the thread waits on it, with a deadline when a sync is due.
    private let wake = DispatchSemaphore(value: 0)

    /// Queues `job` for the thread; once stopped (the environment closed), runs it here (it finds no environment).
    func post(_ job: @escaping @Sendable () -> Void) {
        let queued = state.withLock { state in
            if state.stopped { return false }
            state.jobs.append(job)
            return true
        }
        if queued { wake.signal() } else { job() }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        wake.signal()
    }

    /// Whether the calling thread is the one serving the jobs (a job waiting for a later job would wait forever).
    var isServingThread: Bool {
        state.withLock { state in state.server.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Runs jobs in the order posted until stopped (those posted before `stop` still run); `sync` runs once
    /// `syncEvery` has passed since the first commit after the last sync (never, when nil).
    func serve(syncEvery interval: Duration?, sync: () -> Void) {
        state.withLock { $0.server = pthread_self() }
        let nanos = interval.map { $0.components.seconds * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000 }
        var syncDue: DispatchTime?
        while true {
            if let due = syncDue {
                if wake.wait(timeout: due) == .timedOut {
                    sync()
                    syncDue = nil
                    continue
                }
            } else {
                wake.wait()
            }
            let (batch, stopping) = state.withLock { state in
                defer { state.jobs.removeAll(keepingCapacity: true) }
                return (state.jobs, state.stopped)
            }
            if let nanos, !batch.isEmpty, syncDue == nil { syncDue = .now() + .nanoseconds(Int(nanos)) }
            for job in batch { job() }
            if let due = syncDue, DispatchTime.now() >= due {
                sync()
                syncDue = nil
            }
            if stopping {
                // Jobs posted before the stop were taken above; later ones run on their callers.
                return
            }
        }
    }
}

final class SizeBox: Sendable {
    let value = Mutex<Int>(0)
}

/// A thread that runs `sync` when asked: requests made while it runs make one more run after it (which covers
/// whatever was committed meanwhile), requests made while it waits make one. `stop` waits for the run in progress to
/// end, except on the thread itself (the environment's last reference released inside `sync` closes it there).
/// It runs at the process's priority, not the writer's: it spends its time waiting for the disk, not on a core.
final class BackgroundSync: Sendable {
    private struct State {
        var requested = false
        var stopped = false
        var thread: pthread_t?
        var threadID: Int32?
        var runs = 0
    }
    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)

    /// The thread's kernel id (`/proc/self/task/<id>`).
    var threadID: Int32? { state.withLock { $0.threadID } }
    /// How many times `sync` has run to its end.
    var runs: Int { state.withLock { $0.runs } }

    /// Starts the thread; nil when it did not start within 30 s (Foundation does not say when a thread could not be
    /// created: the process at its thread limit).
    init?(name: String, sync: @escaping @Sendable () -> Void) {
        let started = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            _ = ledgerflow_name_thread(name)
            state.withLock {
                $0.thread = pthread_self()
                $0.threadID = ledgerflow_thread_id()
            }
            started.signal()
            while true {
                wake.wait()
                let (run, stop) = state.withLock { state in
                    defer { state.requested = false }
                    return (state.requested, state.stopped)
                }
                if run && !stop {
                    sync()
                    state.withLock { $0.runs += 1 }
                }
                if stop {
                    ended.signal()
                    return
                }
            }
        }
        thread.start()
        if started.wait(timeout: .now() + .seconds(30)) == .timedOut {
            stop()  // should the thread start later, it ends at once
            return nil
        }
    }

    /// Asks for a run of `sync`; returns at once.
    func request() {
        let wakeUp = state.withLock { state in
            guard !state.stopped, !state.requested else { return false }
            state.requested = true
            return true
        }
        if wakeUp { wake.signal() }
    }

    /// Ends the thread: a run in progress finishes first; a request not started yet is dropped. Called on the thread
    /// itself, or before the thread ran, it does not wait.
    func stop() {
        let (first, wait) = state.withLock { state in
            defer { state.stopped = true }
            let own = state.thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
            return (!state.stopped, state.thread != nil && !own)
        }
        guard first else { return }
        wake.signal()
        if wait { ended.wait() }
    }
}

/// A reader-writer lock that prefers the writer (a writer waiting stops new readers, so a steady stream of reads
/// cannot starve it). Not recursive: a holder must not take it again.
final class MapLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func shared<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func exclusive<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
