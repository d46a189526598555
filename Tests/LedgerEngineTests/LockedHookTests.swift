import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

/// A hook called many times runs at the same depth each time (pure, no NATS needed). Kept as the mutex's value
/// itself, a closure was wrapped again at each access, so the n-th call ran through 2n wrappers: the read models'
/// observer of applied batches, called once a batch, grew slower with every batch and would at last have
/// overflowed the stack of a long-running engine.
@Suite struct LockedHookTests {
    /// Where on the stack a hook's body ran, call after call.
    final class Depths: Sendable {
        private let addresses = Mutex<[UInt]>([])

        @inline(never) func record() {
            var marker = 0
            let address = withUnsafeMutablePointer(to: &marker) { UInt(bitPattern: $0) }
            addresses.withLock { $0.append(address) }
        }

        /// How many different depths were seen, and how far apart the first and last were (bytes).
        var spread: (distinct: Int, bytes: Int) {
            addresses.withLock { all in
                (Set(all).count, Int(bitPattern: (all.first ?? 0) &- (all.last ?? 0)))
            }
        }
        var count: Int { addresses.withLock { $0.count } }
    }

    @Test func aHookRunsAtTheSameStackDepthOnEveryCall() {
        let depths = Depths()
        let hook = LockedHook<@Sendable (Int) -> Void>()
        hook.function = { _ in depths.record() }
        for i in 0..<2_000 { hook.function?(i) }
        #expect(depths.count == 2_000)
        // Wrapped at each call, the 2,000th would run some 4,000 frames deeper than the first.
        #expect(depths.spread.distinct == 1, "the stack depth moved by \(depths.spread.bytes) bytes")
    }

    @Test func theReadModelsObserverOfAppliedBatchesStaysAtTheSameDepth() throws {
        let directory = TemporaryDirectory()
        let store = try ReadModelStore(path: directory.path, mapSize: 1 << 24)
        let depths = Depths()
        store.appliedObserver.function = { _ in depths.record() }
        for i in 0..<2_000 { store.notifyApplied(Projector.Batch(through: UInt64(i))) }
        #expect(depths.count == 2_000)
        #expect(depths.spread.distinct == 1, "the stack depth moved by \(depths.spread.bytes) bytes")
    }

    @Test func aHookCanBeReplacedAndCleared() {
        let hook = LockedHook<@Sendable (Int) -> Int>()
        #expect(hook.function == nil)
        hook.function = { $0 + 1 }
        #expect(hook.function?(1) == 2)
        hook.function = { $0 * 10 }
        #expect(hook.function?(2) == 20)
        hook.function = nil
        #expect(hook.function == nil)
    }
}
