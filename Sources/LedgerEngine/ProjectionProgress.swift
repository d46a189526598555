import Foundation
import LedgerCore
import LedgerProjections
import Synchronization

/// A shared counter.
final class Counter: Sendable {
    private let value: Atomic<Int>
    init(_ initial: Int = 0) { value = Atomic(initial) }
    func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    var current: Int { value.load(ordering: .relaxed) }
}

/// The log position the read models have reached, with waiters for a position.
public final class ProjectionProgress: Sendable {
    struct State {
        var position: UInt64 = 0
        var waiters: [UInt64: (target: UInt64, continuation: CheckedContinuation<Bool, Never>)] = [:]
        var nextID: UInt64 = 0
        var expired: Set<UInt64> = []
    }
    private let state = Mutex(State())

    public init() {}

    public var position: UInt64 { state.withLock { $0.position } }

    public func advance(to position: UInt64) {
        let ready = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard position > state.position else { return [] }
            state.position = position
            let done = state.waiters.filter { $0.value.target <= position }
            for id in done.keys { state.waiters.removeValue(forKey: id) }
            return done.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    /// Waits until the models reflect `target` (true) or `timeout` passes (false).
    public func wait(for target: UInt64, timeout: Duration) async -> Bool {
        if position >= target { return true }
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        let timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }  // cancelled: the wait ended first
            let waiter = state.withLock { state in
                let waiter = state.waiters.removeValue(forKey: id)
                if waiter == nil { state.expired.insert(id) }
                return waiter
            }
            waiter?.continuation.resume(returning: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let answer = state.withLock { state -> Bool? in
                if state.position >= target { return true }
                if state.expired.remove(id) != nil { return false }
                state.waiters[id] = (target, continuation)
                return nil
            }
            if let answer { continuation.resume(returning: answer) }
        }
    }
}

/// Decoded states of one model by key, bounded in entries and in the bytes of their stored JSON (oldest evicted
/// first), used only on the LMDB writer's thread.
final class StateCache<State>: AnyStateCache, @unchecked Sendable {
    private struct Entry {
        /// Nil while a batch has taken the state out.
        var value: State?
        var bytes: Int
        /// Where the entry was added in `order` (a key removed and added again is evicted from its new place only).
        var place: Int
    }
    private var entries: [String: Entry] = [:]
    private var order: [(key: String, place: Int)] = []
    private var start = 0
    private var places = 0
    private var bytes = 0
    /// States a batch had to read back from LMDB and decode (not kept from an earlier batch), shared by the caches
    /// of one store.
    let readBack: ReadBackCounter
    let capacity: Int
    let byteCapacity: Int

    init(capacity: Int, byteCapacity: Int = 64 << 20, readBack: ReadBackCounter = ReadBackCounter()) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
        self.readBack = readBack
    }

    /// The state of `key`, or nil when it is not cached.
    func get(_ key: String) -> State? { entries[key]?.value }

    /// The state of `key` taken out of the cache (nil when it is not cached): the caller then holds the only copy
    /// and changes it in place, and puts it back with `set`.
    func take(_ key: String) -> State? { entries[key]?.value.take() }

    /// Counts a state read back from LMDB.
    func noteReadBack() { readBack.count.add(1, ordering: .relaxed) }

    func set(_ key: String, _ value: State?, bytes size: Int) {
        guard let value, size <= byteCapacity / 4 else {
            if let old = entries.removeValue(forKey: key) { bytes -= old.bytes }
            return
        }
        if let held = entries[key]?.bytes {
            bytes += size - held
            entries[key]!.value = value
            entries[key]!.bytes = size
        } else {
            places += 1
            entries[key] = Entry(value: value, bytes: size, place: places)
            bytes += size
            order.append((key, places))
        }
        while entries.count > capacity || bytes > byteCapacity, start < order.count {
            let (oldest, place) = order[start]
            start += 1
            if entries[oldest]?.place == place, let old = entries.removeValue(forKey: oldest) { bytes -= old.bytes }
        }
        if order.count - start > 2 * capacity {
            // Places of keys removed since (deleted states): dropped so that `order` stays bounded.
            order = order[start...].filter { entries[$0.key]?.place == $0.place }
            start = 0
        } else if start > capacity {
            order.removeFirst(start)
            start = 0
        }
    }

    var count: Int { entries.count }

    func clear() {
        entries.removeAll()
        order.removeAll()
        start = 0
        bytes = 0
    }
}

/// How many states the folds read back from LMDB (read from any thread).
final class ReadBackCounter: Sendable {
    let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
}

/// A model's `StateCache`, whatever its state type.
protocol AnyStateCache: AnyObject {
    func clear()
}

/// The `StateCache` of each model, by table: each keeps at most the model's `keptStates` and its share of the bytes.
final class StateCaches: @unchecked Sendable {
    private var byTable: [String: any AnyStateCache] = [:]
    let byteCapacity: Int
    let readBack = ReadBackCounter()

    /// `byteCapacity` bytes of stored JSON in all, split evenly between `models` models.
    init(byteCapacity: Int, models: Int) {
        self.byteCapacity = byteCapacity / max(models, 1)
    }

    func cache<M: ReadModel>(_ model: M.Type) -> StateCache<M.State> {
        if let cache = byTable[M.table] as? StateCache<M.State> { return cache }
        let cache = StateCache<M.State>(
            capacity: max(M.keptStates, 1), byteCapacity: byteCapacity, readBack: readBack)
        byTable[M.table] = cache
        return cache
    }

    func clear() {
        for cache in byTable.values { cache.clear() }
    }
}
