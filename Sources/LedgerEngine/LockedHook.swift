import Synchronization

/// A closure set and called from any thread (an observer, a test's failpoint).
///
/// Not `Mutex<(@Sendable (A) -> B)?>`: there the closure is the mutex's generic `Value`, and every `withLock`
/// hands it over `inout` at the generic abstraction, which wraps it in two reabstraction thunks and stores the
/// wrapped closure back. Every call then runs through all the wrappers made before it: the read models' observer
/// of applied batches, called once a batch, grew slower with each batch (measured: 2.6 s for a first 20,000 calls,
/// 8.1 s for the next 20,000), held a little more memory each time, and would have overflowed a long-running
/// engine's stack. Kept inside a struct, the closure crosses the generic boundary as it is.
public final class LockedHook<Function: Sendable>: Sendable {
    private struct Box: Sendable { let function: Function }
    private let box = Mutex<Box?>(nil)

    public init() {}

    public var function: Function? {
        get { box.withLock { $0 }?.function }
        set { box.withLock { $0 = newValue.map(Box.init) } }
    }
}
