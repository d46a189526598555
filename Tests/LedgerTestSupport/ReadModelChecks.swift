import LedgerEngine
import LedgerLMDB
public import LedgerNATS
public import Testing

extension TestStack {
    /// Replays the log into scratch read models (small batches) and compares them with the live ones key by key.
    public func expectRebuildEqualsLive(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let scratch = TemporaryDirectory("rebuild")
        let rebuilt = try ReadModelStore.forRebuild(path: scratch.path, mapSize: 1 << 30)
        // The live models may still be moving (an active schedule fires every second): compare the rebuild with a
        // dump taken at one checkpoint. The dump is one read transaction and the checkpoint only grows, so when it is
        // the same just before and just after the dump, the dump holds exactly the log through it.
        var end = try store.checkpoint()
        var live = try store.dump()
        var settled = false
        for _ in 0..<200 {
            let after = try store.checkpoint()
            if after == end {
                settled = true
                break
            }
            end = after
            live = try store.dump()
        }
        #expect(
            settled, "the live read models never held still long enough to be compared", sourceLocation: sourceLocation)
        try await Projector(ledger: ledger, store: rebuilt, batchSize: 3, recordsSkips: false, logger: testLogger)
            .follow(until: end)
        #expect(try rebuilt.checkpoint() == end, sourceLocation: sourceLocation)
        try expectSameModels(try rebuilt.dump(), live, sourceLocation: sourceLocation)
    }
}

/// The same tables with the same keys and values, table by table.
public func expectSameModels(
    _ a: [String: [(key: [UInt8], value: [UInt8])]], _ b: [String: [(key: [UInt8], value: [UInt8])]],
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    #expect(a.keys.sorted() == b.keys.sorted(), sourceLocation: sourceLocation)
    for table in a.keys.sorted() {
        let left = a[table]!.map {
            String(decoding: $0.key, as: UTF8.self) + "=" + String(decoding: $0.value, as: UTF8.self)
        }
        let right = (b[table] ?? []).map {
            String(decoding: $0.key, as: UTF8.self) + "=" + String(decoding: $0.value, as: UTF8.self)
        }
        #expect(left == right, "table \(table) differs", sourceLocation: sourceLocation)
    }
}

/// The first message of a subscription, or an error after `timeout`.
public func firstMessage(_ messages: AsyncStream<NATSMessage>, timeout: Duration) async throws -> NATSMessage {
    try await withThrowingTaskGroup(of: NATSMessage?.self) { group in
        group.addTask {
            for await message in messages { return message }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        guard let first else { throw RuntimeError("no message within \(timeout)") }
        return first
    }
}
