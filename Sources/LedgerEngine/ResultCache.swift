import LedgerCore
import Synchronization

/// Results kept for a while per key (discovery searches), bounded in entries' bytes and count: the oldest go first,
/// and an entry expires after `ttl`. Whatever the services answer, the cache never holds more than `byteLimit`.
final class ResultCache: Sendable {
    struct Entry {
        var at: ContinuousClock.Instant
        var value: JSONValue
        var bytes: Int
        /// Its place in `order`: an older place of the same key (expired, or set again) is stale.
        var place: Int = 0
    }
    struct State {
        var entries: [String: Entry] = [:]
        var order: [(key: String, place: Int)] = []
        var places = 0
        var head = 0
        var bytes = 0
    }

    let ttl: Duration
    let byteLimit: Int
    /// At most this many keys are held (the oldest go first).
    let entryLimit: Int
    private let state = Mutex(State())

    init(ttl: Duration, byteLimit: Int = Limits.discoveryCacheBytes, entryLimit: Int = 1_000) {
        self.ttl = ttl
        self.byteLimit = byteLimit
        self.entryLimit = max(0, entryLimit)
    }

    /// Keys held now (some may have expired but not yet been removed).
    var count: Int { state.withLock { $0.entries.count } }

    /// Bytes held now.
    var bytes: Int { state.withLock { $0.bytes } }
    /// Places in the eviction order (live or stale), for tests.
    var placesHeld: Int { state.withLock { $0.order.count - $0.head } }

    func get(_ key: String, now: ContinuousClock.Instant = .now) -> JSONValue? {
        state.withLock { state in
            guard let entry = state.entries[key] else { return nil }
            guard now - entry.at < ttl else {
                state.entries.removeValue(forKey: key)
                state.bytes -= entry.bytes
                return nil
            }
            return entry.value
        }
    }

    /// Keeps `value` (whose encoded size is `size` bytes) unless it alone is over a quarter of the limit.
    func set(_ key: String, _ value: JSONValue, size: Int, now: ContinuousClock.Instant = .now) {
        let bytes = size + key.utf8.count
        guard bytes <= byteLimit / 4, entryLimit > 0, ttl > .zero else { return }
        state.withLock { state in
            state.places += 1
            let place = state.places
            if let old = state.entries.updateValue(
                Entry(at: now, value: value, bytes: bytes, place: place), forKey: key)
            {
                state.bytes -= old.bytes
            }
            state.order.append((key, place))
            state.bytes += bytes
            // The oldest live entries go first; a stale place (its key expired or was set again since) removes
            // nothing.
            while state.bytes > byteLimit || state.entries.count > entryLimit, state.head < state.order.count {
                let oldest = state.order[state.head]
                state.head += 1
                if let old = state.entries[oldest.key], old.place == oldest.place {
                    state.entries.removeValue(forKey: oldest.key)
                    state.bytes -= old.bytes
                }
            }
            // Stale places are dropped before `order` outgrows the entries.
            if state.order.count - state.head > 2 * state.entries.count + 64 {
                state.order = state.order[state.head...].filter { state.entries[$0.key]?.place == $0.place }
                state.head = 0
            } else if state.head > 1024, state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }
}
