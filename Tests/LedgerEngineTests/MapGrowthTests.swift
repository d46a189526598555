import Foundation
import LedgerCore
import LedgerLMDB
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

/// The LMDB map grows when full, so large read models never stop the projection (issue 16).
@Suite struct MapGrowthTests {
    static func started(_ run: String, padding: Int) -> LedgerEvent {
        let body = LedgerEvent.Body.runStarted(
            FlowRunStarted(
                run_id: run, flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
                trigger: RunTrigger(kind: .manual), actor: "t",
                input: ["blob": .string(String(repeating: "x", count: padding))], step_ids: ["s"], dedup_key: nil,
                message_id: nil, channel: nil))
        return LedgerEvent(id: run, type: body.type, time: "2026-11-23T10:00:00.000Z", runid: run, body: body)
    }

    @Test func aStoreOpenedWithATinyMapAppliesMoreThanItHolds() async throws {
        let directory = TemporaryDirectory("map")
        let store = try ReadModelStore(path: "\(directory.path)/lmdb", durability: .noSync, mapSize: 1 << 20)
        #expect(store.mapSize == 1 << 20)
        // Readers keep reading while the map grows under them.
        let readers = Readers()
        let reading = (0..<2).map { _ in
            Task.detached {
                while readers.writing.load(ordering: .relaxed) {
                    _ = try store.run("big-0")
                    _ = try store.checkpoint()
                    readers.reads.add(1, ordering: .relaxed)
                    await Task.yield()
                }
            }
        }
        // 400 runs of 10 KiB each, 4 MB in all, in batches of 40: about four times the map it opened with.
        var sequence: UInt64 = 0
        for batch in 0..<10 {
            var events: [(sequence: UInt64, event: LedgerEvent)] = []
            for i in 0..<40 {
                sequence += 1
                events.append((sequence, Self.started("big-\(batch * 40 + i)", padding: 10 * 1024)))
            }
            try await store.apply(events, through: sequence)
        }
        readers.writing.store(false, ordering: .relaxed)
        for reader in reading { try await reader.value }
        #expect(try store.checkpoint() == 400)
        #expect(store.mapSize > 1 << 22, "the map grew from 1 MiB past the 4 MB written")
        #expect(readers.reads.load(ordering: .relaxed) > 0)
        for i in 0..<400 {
            let run = try #require(try store.run("big-\(i)"), "run big-\(i) is missing")
            #expect(run.input["blob"]?.stringValue?.count == 10 * 1024)
        }
        #expect(try store.activeRunIDs().count == 400)
    }

    @Test func theMapDoesNotGrowPastItsMaximumAndSaysWhatToDo() async throws {
        let directory = TemporaryDirectory("map-max")
        let environment = try LMDBEnvironment(
            path: directory.path, tables: ["t"], mapSize: 1 << 20, maximumMapSize: 2 << 20, durability: .noSync)
        let table = environment.table("t")
        let error = await #expect(throws: LMDBError.self) {
            for i in 0..<100 {
                try await environment.writer.write { txn in
                    try txn.put(table, key: Array("k\(i)".utf8), value: [UInt8](repeating: 7, count: 100 * 1024))
                }
            }
        }
        #expect(error?.isMapFull == true)
        #expect(error?.description.contains("--lmdb-map-size") == true, "\(String(describing: error))")
        #expect(environment.mapSize == 2 << 20)
    }

    @Test func aMapSizeThatIsNoSizeIsRefusedWithWhatToDo() throws {
        let directory = TemporaryDirectory("map-bad")
        #expect {
            _ = try ReadModelStore(path: "\(directory.path)/lmdb", mapSize: 0)
        } throws: { error in
            "\(error)".contains("give a positive size")
        }
    }
}

final class Readers: Sendable {
    let writing = Atomic<Bool>(true)
    let reads = Atomic<Int>(0)
}
