import Foundation
import LedgerCore
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

/// A map of decoded states by table and key, bounded in entries and in the bytes of their stored JSON (oldest
/// evicted first), used only on the LMDB writer's thread.
final class StateCache: @unchecked Sendable {
    /// A model's table and a key in it (kept apart: no string is built to look one up).
    struct Key: Hashable {
        var table: String
        var key: String
    }
    private var entries: [Key: (value: Any, bytes: Int)] = [:]
    private var order: [Key] = []
    private var start = 0
    private var bytes = 0
    let capacity: Int
    let byteCapacity: Int

    init(capacity: Int, byteCapacity: Int = 64 << 20) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
    }

    func get(_ table: String, _ key: String) -> Any? { entries[Key(table: table, key: key)]?.value }

    func set(_ table: String, _ key: String, _ value: Any?, bytes size: Int) {
        let k = Key(table: table, key: key)
        guard let value, size <= byteCapacity / 4 else {
            if let old = entries.removeValue(forKey: k) { bytes -= old.bytes }
            return
        }
        if let old = entries.updateValue((value, size), forKey: k) {
            bytes += size - old.bytes
        } else {
            bytes += size
            order.append(k)
        }
        while order.count - start > capacity || bytes > byteCapacity, start < order.count {
            if let old = entries.removeValue(forKey: order[start]) { bytes -= old.bytes }
            start += 1
        }
        if start > capacity {
            order.removeFirst(start)
            start = 0
        }
    }

    func clear() {
        entries.removeAll()
        order.removeAll()
        start = 0
        bytes = 0
    }
}
