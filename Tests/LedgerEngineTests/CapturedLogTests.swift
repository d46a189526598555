import Foundation
import LedgerCore
import LedgerLMDB
import LedgerProjections
import Logging
import Testing

@testable import LedgerEngine

/// The read models an earlier version stored from its own log, rebuilt by today's code from the same log: every
/// table, key and value byte for byte. `tools/capture-log` made both fixtures with `ledgerflow dev` of commit b05b826
/// (`Tests/LedgerCoreTests/Fixtures/log-2026-12-05.jsonl`, every message of the stream; `models-2026-12-05.jsonl`,
/// every row of every LMDB table after serve had applied the log), driving every kind of event the engine writes.
/// A change to a fold, a stored shape, an index or the codec that would make a rebuild differ from what a running
/// version stored fails here, table and key named.
@Suite struct CapturedLogTests {
    struct Message: Decodable {
        var stream: String
        var seq: UInt64
        var subject: String
        var msg_id: String?
        var payload: Data
    }

    struct Row: Decodable, Hashable {
        var table: String
        var key: Data
        var value: Data
    }

    static func lines<T: Decodable>(_ name: String, as: T.Type) throws -> [T] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../LedgerCoreTests/Fixtures/\(name)")
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }

    /// The log replayed in batches of `batchSize` (the projector's batches depend on timing; the models must not).
    static func rebuild(batchSize: Int) async throws -> [String: [(key: [UInt8], value: [UInt8])]] {
        let messages = try lines("log-2026-12-05.jsonl", as: Message.self).filter { $0.stream == "LEDGER" }
            .map {
                LogMessage(sequence: $0.seq, subject: $0.subject, payload: Array($0.payload), messageID: $0.msg_id)
            }
        #expect(messages.count >= 250)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("captured-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try ReadModelStore(path: directory.path, mapSize: 1 << 26)
        var logger = Logger(label: "captured-log")
        logger.logLevel = .critical
        for start in stride(from: 0, to: messages.count, by: batchSize) {
            let chunk = Array(messages[start..<min(start + batchSize, messages.count)])
            try await store.apply(Projector.decode(chunk, logger: logger))
        }
        return try store.dump()
    }

    @Test(arguments: [1, 7, 500])
    func theReadModelsRebuiltFromTheLogAreThoseServeStored(batchSize: Int) async throws {
        let stored = Dictionary(grouping: try Self.lines("models-2026-12-05.jsonl", as: Row.self)) { $0.table }
        // Every model and index has rows in the fixture, but the runs in progress (the capture ends when every run
        // has finished).
        for table in ReadModelTables.all where table != RunStatusModel.activeTable {
            #expect(stored[table]?.isEmpty == false, "the fixture has no row in \(table)")
        }
        let rebuilt = try await Self.rebuild(batchSize: batchSize)
        for table in Set(ReadModelTables.all).union(stored.keys).sorted() {
            let want = Dictionary(
                (stored[table] ?? []).map { (Array($0.key), Array($0.value)) }, uniquingKeysWith: { a, _ in a })
            let have = Dictionary((rebuilt[table] ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            #expect(Set(have.keys) == Set(want.keys), "\(table): the keys differ")
            for (key, value) in want where have[key] != nil && have[key] != value {
                Issue.record(
                    """
                    \(table)/\(String(decoding: key, as: UTF8.self)):
                    rebuilt \(String(decoding: have[key]!, as: UTF8.self))
                    stored  \(String(decoding: value, as: UTF8.self))
                    """)
            }
        }
    }
}
