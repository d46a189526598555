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
            let codec = EventCodec()
            let body: LedgerEvent.Body
            switch i % perRun {
            case 0:
                body = .runStarted(
                    FlowRunStarted(
                        run_id: run, flow_id: "bench", flow_version: 1, definition_hash: "h", mode: .live,
                        trigger: RunTrigger(kind: .event),
                        actor: "bench", input: ["n": .number(Double(i))], step_ids: ["a", "b", "c"],
                        dedup_key: "signal-\(i / perRun)", message_id: nil, channel: nil))
            case 4: body = .runSucceeded(FlowRunSucceeded(output: ["text": "done"]))
            default: return Self.event(i, run: run)
            }
            return try! body.encode(
                id: "e-\(i)", time: "2026-11-23T10:00:00.000Z", runid: run, flowid: "bench", flowversion: 1,
                codec: codec)
        }
        let generate = ContinuousClock.now
        try await appendAll(
            ledger, payloads: payloads, subject: { Subjects.run(runs[$0 / perRun]) }, ids: { "e-\($0)" })
        say("  generated the log in \(String(format: "%.1f", (ContinuousClock.now - generate) / .seconds(1))) s")

        let stream = ledger.stream
        let (read, rawSeconds) = try await Task.detached {
            let connection = try CNATSRawConnection(url: url)
            let rawStart = ContinuousClock.now
            let read = try connection.orderedRead(stream: stream, subject: "ledger.>", count: events)
            return (read, (ContinuousClock.now - rawStart) / .seconds(1))
        }.value
        let rawRate = Double(read) / rawSeconds
        precondition(read == events, "the raw reader saw \(read) of \(events)")

        let store = try ReadModelStore.forRebuild(path: "\(scratch)/rebuild-lmdb")
        let start = ContinuousClock.now
        try await Projector(ledger: ledger, store: store, recordsSkips: false, logger: logger).follow(
            until: UInt64(events))
        try store.sync()
        let rate = Double(events) / ((ContinuousClock.now - start) / .seconds(1))
        let folded = try store.run(runs[7])?.status
        precondition(folded == .succeeded, "the rebuilt read model is wrong")
        precondition(store.skippedCount == 0, "the rebuild skipped \(store.skippedCount) of the benchmark's events")
        report.add(
            Figure(
                scenario: "3. rebuild", metric: "events replayed into LMDB/s", value: rate, unit: "events/s",
                ceiling: rawRate,
                ceilingName: "raw ordered consumer, no processing", target: "ratio ≥ 0.8 and ≥ 100000/s",
                met: rate / rawRate >= 0.8 && rate >= 100_000, key: "rebuild"))

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
}
