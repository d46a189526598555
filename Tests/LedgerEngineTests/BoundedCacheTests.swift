import LedgerCore
import LedgerTestSupport
import Testing

@testable import LedgerEngine

/// Caches hold at most their byte budget, whatever arrives (pure, no NATS needed).
@Suite struct BoundedCacheTests {
    @Test func theDiscoveryCacheEvictsTheOldestPastItsBudget() {
        let cache = ResultCache(ttl: .seconds(60), byteLimit: 10_000)
        for i in 0..<1000 { cache.set("query \(i)", .string("result \(i)"), size: 100) }
        #expect(cache.bytes <= 10_000)
        #expect(cache.get("query 999") == .string("result 999"))
        #expect(cache.get("query 0") == nil)
        // A single entry over a quarter of the budget is not kept at all.
        cache.set("huge", .string("x"), size: 5_000)
        #expect(cache.get("huge") == nil)
    }

    @Test func anEntryExpiresAfterItsTTL() {
        let cache = ResultCache(ttl: .seconds(60), byteLimit: 10_000)
        let then = ContinuousClock.now
        cache.set("q", "r", size: 10, now: then)
        #expect(cache.get("q", now: then + .seconds(59)) == "r")
        #expect(cache.get("q", now: then + .seconds(61)) == nil)
        #expect(cache.bytes == 0)
    }

    @Test func keysThatExpireAndComeBackDoNotGrowTheCache() {
        let cache = ResultCache(ttl: .seconds(1), byteLimit: 10_000)
        var now = ContinuousClock.now
        for _ in 0..<10_000 {
            cache.set("same", "r", size: 10, now: now)
            now = now + .seconds(2)
            #expect(cache.get("same", now: now) == nil)
        }
        #expect(cache.placesHeld < 200)
    }

    @Test func aKeySetAgainAfterExpiringIsNotEvictedByItsOldPlace() {
        let cache = ResultCache(ttl: .seconds(10), byteLimit: 100_000, entryLimit: 3)
        let then = ContinuousClock.now
        cache.set("a", "old", size: 10, now: then)
        cache.set("b", "b", size: 10, now: then + .seconds(5))
        #expect(cache.get("a", now: then + .seconds(11)) == nil)
        cache.set("a", "fresh", size: 10, now: then + .seconds(11))
        cache.set("c", "c", size: 10, now: then + .seconds(12))
        cache.set("d", "d", size: 10, now: then + .seconds(12))
        // Over three entries: "b" (the oldest live one) goes, not the fresh "a" through its stale place.
        #expect(cache.count == 3)
        #expect(cache.get("a", now: then + .seconds(12)) == "fresh")
        #expect(cache.get("b", now: then + .seconds(12)) == nil)
    }

    @Test func recentStatesStayWithinTheirByteBudget() {
        let cache = StateCache<Int>(capacity: 4096, byteCapacity: 1000)
        for i in 0..<100 { cache.set("r\(i)", i, bytes: 100) }
        #expect(cache.get("r99") == 99)
        #expect(cache.get("r0") == nil)
        var held = 0
        for i in 0..<100 where cache.get("r\(i)") != nil { held += 1 }
        #expect(held <= 10)
    }

    @Test func aTakenStateIsHeldOnlyByWhoTookItUntilItIsSetAgain() throws {
        let cache = StateCache<Held>(capacity: 10)
        cache.set("r", Held(values: [1, 2, 3]), bytes: 10)
        var taken = try #require(cache.take("r"))
        #expect(cache.get("r") == nil)
        #expect(cache.take("r") == nil)
        // The cache no longer holds the state: changing it copies nothing.
        #expect(isKnownUniquelyReferenced(&taken.box))
        taken.box.values.append(4)
        cache.set("r", taken, bytes: 12)
        #expect(cache.get("r")?.box.values == [1, 2, 3, 4])
        #expect(cache.count == 1)
    }

    @Test func aStateDeletedAndAddedAgainIsNotEvictedByItsOldPlace() {
        let cache = StateCache<Int>(capacity: 3)
        cache.set("a", 1, bytes: 1)
        cache.set("a", nil, bytes: 0)
        cache.set("b", 2, bytes: 1)
        cache.set("a", 3, bytes: 1)
        cache.set("c", 4, bytes: 1)
        cache.set("d", 5, bytes: 1)
        // Over three: "b", the oldest, goes; "a" stays (its old place was before "b").
        #expect(cache.count == 3)
        #expect(cache.get("a") == 3)
        #expect(cache.get("b") == nil)
        // Deleting and adding keys again and again keeps the cache within its capacity.
        for i in 0..<10_000 {
            cache.set("k\(i % 5)", i, bytes: 1)
            cache.set("k\(i % 5)", nil, bytes: 0)
        }
        #expect(cache.count <= 3)
    }
}

/// A state whose storage is a reference, to see who holds it.
private struct Held {
    final class Box {
        var values: [Int]
        init(_ values: [Int]) { self.values = values }
    }
    var box: Box
    init(values: [Int]) { box = Box(values) }
}
