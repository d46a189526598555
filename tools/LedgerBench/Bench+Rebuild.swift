import Foundation
import Histogram
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerLMDB
import LedgerNATS
import LedgerTestSupport
import Logging
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension Bench {
    // MARK: 3. Projection rebuild (and 5. memory after it)

    func rebuild(url: String, events: Int) async throws {
        say(
            "\n3. projection rebuild: \(events) events (runs of 5 events each) replayed into LMDB vs a raw ordered consumer"
        )
        let ledger = try await freshLedger(url: url)
        defer { ledger.close() }
        let perRun = 5
        // A run started by a signal has the id its flow and dedup key derive (the read models check it).
        let runs = (0..<(events / perRun + 1)).map { DerivedID.uuid("bench/signal-\($0)") }
        let payloads: [[UInt8]] = (0..<events).map { i in
            let run = runs[i / perRun]
            let body = Self.runEvent(i % perRun, of: perRun, run: run, n: i, dedupKey: "signal-\(i / perRun)")
            return try! body.encode(
                id: "e-\(i)", time: "2026-11-23T10:00:00.000Z", runid: run, flowid: "bench", flowversion: 1,
                codec: EventCodec())
        }
        let generate = ContinuousClock.now
        try await appendAll(
            ledger, payloads: payloads, subject: { Subjects.run(runs[$0 / perRun]) }, ids: { "e-\($0)" })
        say("  generated the log in \(String(format: "%.1f", (ContinuousClock.now - generate) / .seconds(1))) s")

        let stream = ledger.stream
        /// Events per second of a raw cnats reader on a connection of its own, off the pool (its calls block).
        func rawReaderRate(
            _ name: String, _ read: @escaping @Sendable (CNATSRawConnection) throws -> Int
        )
            async throws -> Double
        {
            let (count, seconds) = try await Task.detached {
                let connection = try CNATSRawConnection(url: url)
                let start = ContinuousClock.now
                let count = try read(connection)
                return (count, (ContinuousClock.now - start) / .seconds(1))
            }.value
            precondition(count == events, "the raw \(name) saw \(count) of \(events)")
            return Double(count) / seconds
        }
        let rawRate = try await rawReaderRate("ordered consumer") {
            try $0.orderedRead(stream: stream, subject: "ledger.>", count: events)
        }
        let pullRate = try await rawReaderRate("pull consumer") {
            try $0.pullRead(stream: stream, subject: "ledger.>", count: events)
        }
        // Ledgerflow's own reader with nothing done with what it reads: the part of the rebuild that is reading.
        let readStart = ContinuousClock.now
        var readerSaw = 0
        var iterator = ledger.messages(until: .now, batchSize: 2000).makeAsyncIterator()
        while let batch = try await iterator.nextBatch() { readerSaw += batch.count }
        let readerSeconds = (ContinuousClock.now - readStart) / .seconds(1)
        precondition(readerSaw == events, "Ledgerflow's log reader saw \(readerSaw) of \(events)")
        report.add(
            Figure(
                scenario: "3. rebuild", metric: "events read by Ledgerflow's log reader alone/s (no folding)",
                value: Double(readerSaw) / readerSeconds, unit: "events/s", ceiling: pullRate,
                ceilingName: "raw pull consumer, natsSubscription_Fetch of 1000, no acknowledgements",
                key: "rebuild.reader"))

        // The rebuild's two halves, each alone: reading and decoding (what is decoded is dropped), then folding
        // decoded batches into LMDB one after another (timing only the writes; the batches are read and decoded
        // again on the way, so that the whole log is never held in memory).
        let decodeStart = ContinuousClock.now
        iterator = ledger.messages(until: .now, batchSize: 2000).makeAsyncIterator()
        var decoded = 0
        while let messages = try await iterator.nextBatch() {
            decoded += Projector.decode(messages, logger: logger).events.count
        }
        let decodeSeconds = (ContinuousClock.now - decodeStart) / .seconds(1)
        precondition(decoded == events, "decoded \(decoded) of \(events) events")
        let foldStore = try ReadModelStore.forRebuild(path: "\(scratch)/rebuild-fold-lmdb")
        var foldDuration = Duration.zero
        iterator = ledger.messages(until: .now, batchSize: 2000).makeAsyncIterator()
        while let messages = try await iterator.nextBatch() {
            let batch = Projector.decode(messages, logger: logger)
            let start = ContinuousClock.now
            _ = try await foldStore.apply(batch)
            foldDuration += ContinuousClock.now - start
        }
        let syncStart = ContinuousClock.now
        try foldStore.sync()
        let foldSeconds = (foldDuration + (ContinuousClock.now - syncStart)) / .seconds(1)
        report.add(
            Figure(
                scenario: "3. rebuild", metric: "events read and decoded/s (no folding)",
                value: Double(events) / decodeSeconds, unit: "events/s", key: "rebuild.decode"))
        report.add(
            Figure(
                scenario: "3. rebuild", metric: "events folded into LMDB/s (decoded before, batches one after another)",
                value: Double(events) / foldSeconds, unit: "events/s", key: "rebuild.fold"))

        try await foldInFlight(runs: quick ? 2_000 : 10_000)

        let store = try ReadModelStore.forRebuild(path: "\(scratch)/rebuild-lmdb")
        let start = ContinuousClock.now
        let commits = Atomic<Int>(0)
        try await Projector(ledger: ledger, store: store, recordsSkips: false, logger: logger).follow(
            until: UInt64(events), onBatch: { _ in commits.add(1, ordering: .relaxed) })
        try store.sync()
        let rate = Double(events) / ((ContinuousClock.now - start) / .seconds(1))
        let written = commits.load(ordering: .relaxed)
        let folded = try store.run(runs[7])?.status
        precondition(folded == .succeeded, "the rebuilt read model is wrong")
        precondition(store.skippedCount == 0, "the rebuild skipped \(store.skippedCount) of the benchmark's events")
        report.add(
            Figure(
                scenario: "3. rebuild", metric: "events replayed into LMDB/s", value: rate, unit: "events/s",
                ceiling: rawRate,
                ceilingName: "raw ordered consumer, no processing", target: "ratio ≥ 0.8 and ≥ 100000/s",
                met: rate / rawRate >= 0.8 && rate >= 100_000,
                note: "\(written) LMDB write transactions, \(events / max(written, 1)) events each on average",
                key: "rebuild"))

        // 5. A fresh `serve` catching up with the whole log: its peak memory.
        let serve = try LedgerflowServe(
            binary: options.ledgerflow, natsURL: url, dataDirectory: "\(scratch)/serve-rebuild")
        defer { serve.stop() }
        try await serve.waitAnswering()
        try await serve.waitCaughtUp(timeout: .seconds(900))
        let heap = serve.statusField("RssAnon:")
        let mapped = serve.statusField("RssFile:")
        report.add(
            Figure(
                scenario: "5. memory",
                metric: String(
                    format:
                        "heap (RssAnon) of ledgerflow serve after catching up with %d events (beside it: %.1f MB of mapped LMDB and binary pages, RssFile)",
                    events, mapped),
                value: heap, unit: "MB", target: "≤ 100 MB", met: heap <= 100,
                note: String(
                    format:
                        "the mapped pages (RssFile) are page cache the kernel reclaims under pressure; peak RSS of both (VmHWM) %.1f MB",
                    serve.peakRSSMegabytes()),
                key: "memory.rebuild"))
    }

    /// The projector's fold with many runs in flight, as when runs wait on services: each batch holds the next event
    /// of a tenth of the runs, so a run's next event comes ten batches after its last. Decoded events straight into
    /// LMDB (no log); says how many stored states had to be read back and parsed.
    func foldInFlight(runs: Int) async throws {
        let store = try ReadModelStore.forRebuild(path: "\(scratch)/in-flight-lmdb")
        let perRun = 5
        let batchSize = max(runs / 10, 1)
        var sequence: UInt64 = 0
        var duration = Duration.zero
        var batch: [(sequence: UInt64, event: LedgerEvent)] = []
        let pid = ProcessInfo.processInfo.processIdentifier
        let heapBefore = ProcStatus.field("RssAnon:", pid: pid)
        var heapKept = 0.0
        for round in 0..<perRun {
            // Before the runs settle, every one of them is kept decoded: what they take of the heap.
            if round == perRun - 1 { heapKept = ProcStatus.field("RssAnon:", pid: pid) - heapBefore }
            for run in 0..<runs {
                sequence += 1
                let runID = "in-flight-\(run)"
                let body = Self.runEvent(round, of: perRun, run: runID, n: run * perRun + round, dedupKey: nil)
                batch.append(
                    (
                        sequence,
                        LedgerEvent(
                            id: "f-\(sequence)", type: body.type, time: "2026-11-23T10:00:00.001Z", runid: runID,
                            flowid: "bench", body: body)
                    ))
                if batch.count == batchSize || run == runs - 1 {
                    let start = ContinuousClock.now
                    try await store.apply(batch, through: sequence)
                    duration += ContinuousClock.now - start
                    batch.removeAll(keepingCapacity: true)
                }
            }
        }
        let syncStart = ContinuousClock.now
        try store.sync()
        duration += ContinuousClock.now - syncStart
        let folded = try store.run("in-flight-0")?.status
        precondition(folded == .succeeded, "the in-flight fold is wrong")
        report.add(
            Figure(
                scenario: "3. rebuild",
                metric:
                    "events folded into LMDB/s with \(runs) runs in flight (each batch: the next event of a tenth of them)",
                value: Double(runs * perRun) / (duration / .seconds(1)), unit: "events/s",
                note: String(
                    format:
                        "%d stored states read back from LMDB and parsed (a state not kept decoded between batches); the bench's heap (RssAnon) grew by %.1f MB while the runs were in flight",
                    store.statesReadBack, heapKept),
                key: "rebuild.inFlight"))
    }
}
