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

struct Bench {
    let options: Options
    let report: Report
    let scratch: String
    let logger: Logger

    var quick: Bool { options.quick }

    func runAll() async throws {
        let server = try LocalNATSServer(dataDirectory: "\(scratch)/nats", logger: logger)
        defer { server.stop() }
        say("nats-server \(server.version) at \(server.url) (default durability: fsync every 2 minutes)")
        if options.runs("append") {
            try await append(url: server.url, scenario: "1. append", count: quick ? 2_000 : 100_000)
        }
        if options.runs("e2e") || options.runs("query") {
            try await serveScenarios(
                url: server.url, scenario: "2. end to end", runs: quick ? 200 : 10_000, singles: quick ? 20 : 500,
                query: true)
        }
        if options.runs("rebuild") { try await rebuild(url: server.url, events: quick ? 10_000 : 1_000_000) }
        if options.runs("chain") { chain(events: quick ? 10_000 : 200_000) }
        if options.runs("durability") {
            let synced = try LocalNATSServer(dataDirectory: "\(scratch)/nats-sync", syncAlways: true, logger: logger)
            defer { synced.stop() }
            say("\nnats-server \(synced.version) with sync_interval: always at \(synced.url)")
            try await append(url: synced.url, scenario: "6. append, sync_interval: always", count: quick ? 300 : 5_000)
            try await serveScenarios(
                url: synced.url, scenario: "6. end to end, sync_interval: always", runs: quick ? 50 : 1_000,
                singles: quick ? 10 : 100, query: false)
        }
    }

    // MARK: 1. Append

    static func event(_ i: Int, run: String) -> [UInt8] {
        let body = LedgerEvent.Body.stepAttemptSucceeded(
            StepAttemptSucceeded(
                step_id: "step-\(i % 3)", attempt: 1, output: ["value": .number(Double(i)), "note": "benchmark event"],
                started_at: "2026-11-23T10:00:00.000Z", finished_at: "2026-11-23T10:00:00.001Z"))
        return try! body.encode(
            id: "ev-\(i)", time: "2026-11-23T10:00:00.001Z", runid: run, flowid: "bench", flowversion: 1,
            codec: EventCodec())
    }

    /// An empty LEDGER stream (deleted as an operator would, then created by the ledger).
    func freshLedger(url: String) async throws -> Ledger {
        try await LedgerTestSupport.freshLedger(url: url, clientName: "bench", logger: logger)
    }

    func append(url: String, scenario: String, count: Int) async throws {
        say("\n\(scenario): \(count) events of ~\(Self.event(0, run: "r").count) bytes, each with Nats-Msg-Id")
        let payloads = (0..<count).map { Self.event($0, run: "r") }
        var raw: [Double] = []
        var ours: [Double] = []
        for round in 0..<3 {
            let ids = (0..<count).map { "raw-\(round)-\($0)" }
            var ledger = try await freshLedger(url: url)
            let (failed, seconds) = try await Task.detached {
                let connection = try CNATSRawConnection(url: url)
                let rawStart = ContinuousClock.now
                let failed = try connection.publishAsync(subject: "ledger.bench", payloads: payloads, messageIDs: ids)
                return (failed, (ContinuousClock.now - rawStart) / .seconds(1))
            }.value
            raw.append(Double(count) / seconds)
            precondition(failed == 0, "raw publish lost \(failed) acknowledgements")
            ledger.close()

            ledger = try await freshLedger(url: url)
            let start = ContinuousClock.now
            try await appendAll(
                ledger, payloads: payloads, subject: { _ in "ledger.bench" }, ids: { "led-\(round)-\($0)" })
            ours.append(Double(count) / ((ContinuousClock.now - start) / .seconds(1)))
            let stored = try await ledger.lastSequence()
            precondition(stored == UInt64(count), "the ledger did not store every event")
            ledger.close()
        }
        let value = ours.sorted()[1]
        let ceiling = raw.sorted()[1]
        report.add(
            Figure(
                scenario: scenario, metric: "events appended/s (median of 3)", value: value, unit: "events/s",
                ceiling: ceiling,
                ceilingName: "raw js_PublishAsync", target: scenario.hasPrefix("1.") ? "ratio ≥ 0.8" : nil,
                met: scenario.hasPrefix("1.") ? value / ceiling >= 0.8 : nil))
    }

    /// Appends everything through `Ledger.append`, batches of 1000 with up to 16 batches in flight.
    func appendAll(
        _ ledger: Ledger, payloads: [[UInt8]], subject: @escaping @Sendable (Int) -> String,
        ids: @escaping @Sendable (Int) -> String
    ) async throws {
        let batch = 1000
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for start in stride(from: 0, to: payloads.count, by: batch) {
                if inFlight >= 16 {
                    try await group.next()
                    inFlight -= 1
                }
                let messages = (start..<min(start + batch, payloads.count)).map { i in
                    OutgoingMessage(subject: subject(i), payload: payloads[i], messageID: ids(i))
                }
                group.addTask {
                    for result in await ledger.appendPipelined(messages) { _ = try result.get() }
                }
                inFlight += 1
            }
            try await group.waitForAll()
        }
    }

    // MARK: 2, 4, 5. End to end, query and memory, against a `ledgerflow serve` child process

    static let flow: JSONValue = [
        "id": "bench-transform", "name": "Three transforms",
        "trigger": ["event": "AssistantCommandIssued", "intent": "bench.transform"],
        "steps": [
            ["id": "a", "action": "transform", "with": ["value": ["title": "{{trigger.entities.title}}"]]],
            [
                "id": "b", "action": "transform",
                "with": ["value": ["upper": "{{steps.a.output.title}}", "n": "{{trigger.entities.n}}"]],
                "depends_on": ["a"],
            ],
            ["id": "c", "action": "transform", "with": ["value": "{{steps.b.output}}"], "depends_on": ["b"]],
        ],
        "output": ["text": "done {{steps.c.output.upper}}"],
    ]

    static func trigger(_ i: Int, tag: String) -> (id: String, payload: [UInt8]) {
        let id = "\(tag)-\(i)"
        let data: JSONValue = [
            "message_id": .string("m-\(id)"), "intent": "bench.transform",
            "entities": ["title": .string("t\(i)"), "n": .number(Double(i))],
            "user": ["id": "bench"], "channel": ["type": "chat", "conversation_id": "bench"],
        ]
        return (
            id,
            try! EventCodec().encode(
                CloudEvent(id: id, source: "bench", type: EventType.assistantCommandIssued, data: data))
        )
    }

    static func runID(_ triggerID: String) -> String { DerivedID.uuid("bench-transform/\(triggerID)") }

    func serveScenarios(url: String, scenario: String, runs: Int, singles: Int, query: Bool) async throws {
        say(
            "\n\(scenario): \(runs) runs of 3 transform steps, then \(singles) single runs one at a time (ledgerflow serve as a child process)"
        )
        let ledger = try await freshLedger(url: url)
        defer { ledger.close() }
        // The observer and the publisher of triggers stand outside Ledgerflow, as the assistant would.
        let outside = try await NATSConnection.connect(url: url, name: "bench-observer", logger: logger)
        defer { outside.close() }
        let serve = try LedgerflowServe(
            binary: options.ledgerflow, natsURL: url, dataDirectory: "\(scratch)/serve-\(UUID().uuidString.prefix(8))")
        defer { serve.stop() }
        try await serve.waitAnswering()
        let registered = try await serve.http.json("POST", "/automation/flows", Self.flow).0
        let activated = try await serve.http.json("POST", "/automation/flows/bench-transform/activate").0
        precondition(
            registered == 201 && activated == 200, "could not register the benchmark flow (\(registered), \(activated))"
        )

        let succeeded = try outside.subscribe(subject: "ledger.run.*")
        let finished = Mutex<[String: ContinuousClock.Instant]>([:])
        let counter = Task {
            let marker = Array(#""type":"FlowRunSucceeded""#.utf8)
            for await message in succeeded.messages where message.payload.firstRange(of: marker) != nil {
                let run = String(message.subject.dropFirst("ledger.run.".count))
                finished.withLock { $0[run] = ContinuousClock.now }
            }
        }
        defer {
            succeeded.unsubscribe()
            counter.cancel()
        }
        try await outside.flush()

        // Throughput: every trigger appended as fast as the stream accepts them.
        let triggers = (0..<runs).map { Self.trigger($0, tag: "tp-\(scenario.prefix(1))") }
        let start = ContinuousClock.now
        try await appendAll(
            ledger, payloads: triggers.map(\.payload), subject: { _ in Subjects.assistantCommandIssued },
            ids: { triggers[$0].id })
        let deadline = ContinuousClock.now + .seconds(quick ? 120 : 600)
        while finished.withLock({ $0.count }) < runs, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await serve.waitCaughtUp()
        let elapsed = (ContinuousClock.now - start) / .seconds(1)
        let done = finished.withLock { $0.count }
        guard done >= runs else { throw RuntimeError("only \(done) of \(runs) runs finished; see \(serve.logFile)") }
        let sample = try await serve.http.json("GET", "/automation/runs/\(Self.runID(triggers[runs / 2].id))")
        precondition(
            sample.1["status"] == "SUCCEEDED",
            "the read model does not show the run SUCCEEDED: \(sample.1.compactJSON.prefix(300))")
        let rawCeiling = report.figures.last {
            $0.metric.hasPrefix("events appended") && $0.scenario.hasPrefix(scenario.hasPrefix("6") ? "6" : "1")
        }?.ceiling
        let eventsPerRun = 7.0
        let throughput = Double(runs) / elapsed
        report.add(
            Figure(
                scenario: scenario,
                metric: "runs completed/s (trigger appended → FlowRunSucceeded and read model SUCCEEDED)",
                value: throughput,
                unit: "runs/s", ceiling: rawCeiling.map { $0 / eventsPerRun },
                ceilingName: "raw js_PublishAsync ÷ 7 messages per run",
                target: scenario.hasPrefix("2.") ? "≥ 2000 runs/s" : nil,
                met: scenario.hasPrefix("2.") ? throughput >= 2000 : nil))

        // Latency: one run at a time, from the trigger's append to the read model showing SUCCEEDED (polled over one
        // keep-alive connection). The run's own timestamps split it into ingest, execution and projection.
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        var samples: [String] = []
        let client = try RawHTTP(port: serve.port)
        let marker = Array(#""status":"SUCCEEDED""#.utf8)
        for i in 0..<singles {
            let trigger = Self.trigger(i, tag: "lat-\(scenario.prefix(1))")
            let runID = Self.runID(trigger.id)
            let t0 = ContinuousClock.now
            _ = try await ledger.send(
                payload: trigger.payload, id: trigger.id, on: Subjects.assistantCommandIssued, retry: .once)
            let limit = ContinuousClock.now + .seconds(30)
            while true {
                let (status, answer) = try client.get("/automation/runs/\(runID)", token: LedgerflowServe.token)
                if status == 200, answer.firstRange(of: marker) != nil { break }
                guard ContinuousClock.now < limit else { throw RuntimeError("single run \(runID) did not finish") }
                try await Task.sleep(for: .microseconds(100))
            }
            let micros = (ContinuousClock.now - t0) / .microseconds(1)
            _ = histogram.record(UInt64(max(1, micros)))
            if i >= singles - 50 { samples.append(runID) }
        }
        // Where the time goes, from the log's own clock (JetStream stamps each message when it stores it).
        var ingest = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        var execution = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        for runID in samples {
            let events = try await ledger.read(subject: Subjects.run(runID))
            guard let first = events.first, let last = events.last,
                let startedStored = try await ledger.message(at: first.sequence).flatMap({
                    $0.time.flatMap(Timestamp.parse)
                }),
                let endStored = try await ledger.message(at: last.sequence).flatMap({ $0.time.flatMap(Timestamp.parse) }
                ),
                let started = try? JSONDecoder().decode(LedgerEvent.self, from: Data(first.payload)),
                case .runStarted(let e) = started.body, let triggerSequence = e.trigger.sequence,
                let trigger = try await ledger.message(at: triggerSequence),
                let triggerTime = trigger.time.flatMap(Timestamp.parse)
            else { continue }
            let startedTime = startedStored.timeIntervalSince1970
            let endTime = endStored.timeIntervalSince1970
            _ = ingest.record(UInt64(max(1, (startedTime - triggerTime.timeIntervalSince1970) * 1e6)))
            _ = execution.record(UInt64(max(1, (endTime - startedTime) * 1e6)))
        }
        let p50 = Double(histogram.valueAtPercentile(50)) / 1000
        let p99 = Double(histogram.valueAtPercentile(99)) / 1000
        let isMain = scenario.hasPrefix("2.")
        let split = String(
            format:
                "from the log's own timestamps, p50 over the last 50 runs: trigger stored → FlowRunStarted stored %.2f ms; FlowRunStarted → FlowRunSucceeded stored %.2f ms (5 appends, each waiting for the previous one's acknowledgement)",
            Double(ingest.valueAtPercentile(50)) / 1000, Double(execution.valueAtPercentile(50)) / 1000)
        report.add(
            Figure(
                scenario: scenario, metric: "single-run latency p50", value: p50, unit: "ms",
                target: isMain ? "≤ 5 ms" : nil, met: isMain ? p50 <= 5 : nil, note: split))
        report.add(
            Figure(
                scenario: scenario, metric: "single-run latency p99", value: p99, unit: "ms",
                target: isMain ? "≤ 25 ms" : nil, met: isMain ? p99 <= 25 : nil))
        if isMain {
            let rss = serve.peakRSSMegabytes()
            report.add(
                Figure(
                    scenario: "5. memory", metric: "peak RSS of ledgerflow serve during scenario 2", value: rss,
                    unit: "MB", target: "≤ 150 MB", met: rss <= 150, note: serve.residentSplit()))
        }
        if query {
            try await queries(serve: serve, runIDs: triggers.map { Self.runID($0.id) })
        }
    }

}

/// What /proc says of the `ledgerflow serve` child's memory.
extension LedgerflowServe {
    /// VmHWM from /proc: the process's peak resident set (heap and mapped LMDB pages alike).
    func peakRSSMegabytes() -> Double { statusField("VmHWM:") }

    /// RssAnon and RssFile from /proc now: the heap, and the LMDB file pages mapped in (page cache the OS can drop).
    func residentSplit() -> String {
        String(
            format: "now: %.1f MB heap (RssAnon), %.1f MB mapped LMDB and binary pages (RssFile, reclaimable)",
            statusField("RssAnon:"), statusField("RssFile:"))
    }

    func statusField(_ name: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            let kb =
                line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) }
                ?? 0
            return kb / 1024
        }
        return 0
    }
}
