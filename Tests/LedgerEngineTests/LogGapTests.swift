import Foundation
import LedgerCore
import LedgerLMDB
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Logging
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// A delivery lost between the server and a reader (issue 16): the reader notices and reads again, so the read
    /// models never move their checkpoint past a message they did not apply.
    @Suite struct LogGapTests {
        /// Appends `count` runs' `FlowRunStarted` (run ids `gap-<first>`...), one message each, in one pipelined go.
        func appendRuns(_ ledger: Ledger, count: Int, first: Int = 0) async throws {
            let codec = EventCodec()
            let messages = try (first..<first + count).map { i in
                let run = "gap-\(i)"
                let body = LedgerEvent.Body.runStarted(
                    FlowRunStarted(
                        run_id: run, flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
                        trigger: RunTrigger(kind: .manual), actor: "t", input: ["n": .number(Double(i))],
                        step_ids: ["s"], dedup_key: nil, message_id: nil, channel: nil))
                return OutgoingMessage(
                    subject: Subjects.run(run),
                    payload: try body.encode(
                        id: run, time: Timestamp.now(), runid: run, flowid: "f", flowversion: 1, codec: codec))
            }
            _ = try await ledger.appendPipelined(messages).map { try $0.get() }
        }

        @Test func aDeliveryLostInsideABatchIsReadAgain() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            try await appendRuns(ledger, count: 10)
            let dropped = LossCounter(sequence: 5)
            ledger.failpoints.loseDelivery = { dropped.lose($0) }
            let read = try await ledger.read(subject: nil)
            ledger.failpoints.loseDelivery = nil
            #expect(dropped.count == 1, "the failpoint lost one delivery")
            #expect(read.map(\.sequence) == Array(1...10))
        }

        @Test func aLostLastDeliveryIsReadAgainThoughNoLaterMessageShowsTheGap() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            try await appendRuns(ledger, count: 10)
            let dropped = LossCounter(sequence: 10)
            ledger.failpoints.loseDelivery = { dropped.lose($0) }
            let read = try await ledger.read(subject: nil)
            ledger.failpoints.loseDelivery = nil
            #expect(dropped.count == 1, "the failpoint lost one delivery")
            #expect(read.map(\.sequence) == Array(1...10), "the reader ended early, without the lost message")
        }

        @Test func theProjectorAppliesEveryMessageWhenDeliveriesAreLostInsideAndAtTheEndOfABatch() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            try await appendRuns(ledger, count: 10)
            let directory = TemporaryDirectory("gap")
            let store = try ReadModelStore(path: "\(directory.path)/lmdb", mapSize: 1 << 26)
            let dropped = LossCounter(sequences: [6, 10])
            ledger.failpoints.loseDelivery = { dropped.lose($0) }
            defer { ledger.failpoints.loseDelivery = nil }
            let projector = Projector(ledger: ledger, store: store, recordsSkips: false, logger: testLogger)
            let following = Task { try await projector.follow() }
            defer { following.cancel() }
            let reached = await store.progress.wait(for: 10, timeout: .seconds(30))
            #expect(reached, "the read models stopped at \(store.progress.position), short of the log's end (10)")
            #expect(dropped.count == 2, "the failpoint lost two deliveries")
            for i in 0..<10 {
                #expect(try store.run("gap-\(i)") != nil, "run gap-\(i) is missing from the read models")
            }
        }

        @Test func aProjectorFollowingUntilATargetAppliesNothingPastIt() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            try await appendRuns(ledger, count: 10)
            let directory = TemporaryDirectory("until")
            let store = try ReadModelStore(path: "\(directory.path)/lmdb", mapSize: 1 << 26)
            // Batches of 4 (1-4, 5-8, 9-10): the target falls inside the second.
            try await Projector(ledger: ledger, store: store, batchSize: 4, recordsSkips: false, logger: testLogger)
                .follow(until: 6)
            #expect(try store.checkpoint() == 6)
            #expect(try store.run("gap-5") != nil)
            #expect(try store.run("gap-6") == nil, "a run past the target was applied")
            try await Projector(ledger: ledger, store: store, batchSize: 4, recordsSkips: false, logger: testLogger)
                .follow(until: 10)
            #expect(try store.checkpoint() == 10)
            #expect(try store.run("gap-9") != nil)
        }

        /// Models whose indexes must be derived again (written by another version) hold a damaged run state: it is
        /// named once, with what to do, whether the projector finds it as it starts or a batch finds it later, and
        /// the log's next messages are applied.
        @Test func anUnreadableStoredStateIsNamedOnceAndTheLogIsStillApplied() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            try await appendRuns(ledger, count: 10)
            let directory = TemporaryDirectory("unreadable")
            let logs = CapturedLogs()
            let store = try ReadModelStore(
                path: "\(directory.path)/lmdb", mapSize: 1 << 26, logger: logs.logger(label: "readmodels"))
            func projector() -> Projector {
                Projector(ledger: ledger, store: store, recordsSkips: false, logger: logs.logger(label: "projector"))
            }
            try await projector().follow(until: 10)
            let runs = store.environment.table(RunStatusModel.table)
            let meta = store.environment.table(ReadModelTables.meta)
            func damage() async throws {
                try await store.environment.writer.write { txn in
                    try txn.put(runs, key: Array("gap-3".utf8), value: Array(#"{"run_id":"gap-3","status":"#.utf8))
                    try txn.delete(meta, key: Array(ReadModelTables.indexVersionKey.utf8))
                }
            }
            func said(_ record: CapturedLogs.Record?) -> String {
                record.map { "\($0.message) \($0.metadata.values.joined(separator: " "))" } ?? ""
            }
            // Found as the projector starts.
            try await damage()
            try await appendRuns(ledger, count: 10, first: 10)
            try await projector().follow(until: 20)
            #expect(try store.checkpoint() == 20)
            for i in 10..<20 {
                #expect(try store.run("gap-\(i)") != nil, "run gap-\(i) was not applied after the unreadable state")
            }
            // Found by a batch (models another version moved on while this projector ran).
            try await damage()
            let later = LedgerEvent(
                id: "x", type: EventType.runCancelled, time: "t", runid: "gap-12",
                body: .runCancelled(FlowRunCancelled(actor: "t")))
            try await store.apply([(21, later)], through: 21)
            #expect(try store.run("gap-12")?.status == .cancelled)
            let errors = logs.records.filter { $0.level == .error }
            #expect(errors.count == 2, "\(errors)")
            for part in [RunStatusModel.table, "gap-3", "cannot be read", "ledgerflow projections rebuild"] {
                #expect(said(errors.first).contains(part), "the projector's line does not say \(part)")
                #expect(said(errors.last).contains(part), "the batch's line does not say \(part)")
            }
        }
    }
}

/// Loses the first delivery of each of the given stream sequences.
final class LossCounter: Sendable {
    let pending: Mutex<Set<UInt64>>
    let lost = Atomic<Int>(0)
    var count: Int { lost.load(ordering: .relaxed) }

    init(sequence: UInt64) { pending = Mutex([sequence]) }
    init(sequences: Set<UInt64>) { pending = Mutex(sequences) }

    func lose(_ sequence: UInt64) -> Bool {
        let hit = pending.withLock { $0.remove(sequence) != nil }
        if hit { lost.add(1, ordering: .relaxed) }
        return hit
    }
}
