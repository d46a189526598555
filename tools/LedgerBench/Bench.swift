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
                url: server.url, server: server.processIdentifier, scenario: "2. end to end",
                runs: quick ? 200 : 10_000, singles: quick ? 20 : 500,
                query: true)
        }
        if options.runs("rebuild") { try await rebuild(url: server.url, events: quick ? 10_000 : 1_000_000) }
        if options.runs("seq40") { try await seq40(url: server.url, synced: false, runs: quick ? 5 : 50) }
        if options.runs("list") {
            try await list(
                url: server.url, sizes: options.listSizes ?? (quick ? [1_000, 10_000] : [10_000, 1_000_000]))
        }
        if options.runs("chain") { chain(events: quick ? 10_000 : 200_000) }
        if options.runs("durability") || options.runs("seq40") {
            let synced = try LocalNATSServer(dataDirectory: "\(scratch)/nats-sync", syncAlways: true, logger: logger)
            defer { synced.stop() }
            say("\nnats-server \(synced.version) with sync_interval: always at \(synced.url)")
            if options.runs("durability") {
                try await append(
                    url: synced.url, scenario: "6. append, sync_interval: always", count: quick ? 300 : 5_000)
                try await serveScenarios(
                    url: synced.url, server: synced.processIdentifier, scenario: "6. end to end, sync_interval: always",
                    runs: quick ? 50 : 1_000,
                    singles: quick ? 10 : 100, query: false)
            }
            if options.runs("seq40") { try await seq40(url: synced.url, synced: true, runs: quick ? 5 : 50) }
        }
    }

    // MARK: 1. Append

    static func event(_ i: Int, run: String) -> [UInt8] {
        try! stepSucceeded(i).encode(
            id: "ev-\(i)", time: "2026-11-23T10:00:00.001Z", runid: run, flowid: "bench", flowversion: 1,
            codec: EventCodec())
    }

    static func stepSucceeded(_ i: Int) -> LedgerEvent.Body {
        .stepAttemptSucceeded(
            StepAttemptSucceeded(
                step_id: "step-\(i % 3)", attempt: 1, output: ["value": .number(Double(i)), "note": "benchmark event"],
                started_at: "2026-11-23T10:00:00.000Z", finished_at: "2026-11-23T10:00:00.001Z"))
    }

    /// Event `position` of a bench run of `perRun` events of flow `bench`: its start (input `n`), a step's success
    /// (step `n % 3`, so consecutive `n` name the three steps), ..., its success. The rebuild's log and the in-flight
    /// fold are made of these.
    static func runEvent(_ position: Int, of perRun: Int, run: String, n: Int, dedupKey: String?) -> LedgerEvent.Body {
        switch position {
        case 0:
            return .runStarted(
                FlowRunStarted(
                    run_id: run, flow_id: "bench", flow_version: 1, definition_hash: "h", mode: .live,
                    trigger: RunTrigger(kind: .event), actor: "bench", input: ["n": .number(Double(n))],
                    step_ids: ["step-0", "step-1", "step-2"], dedup_key: dedupKey, message_id: nil, channel: nil))
        case perRun - 1: return .runSucceeded(FlowRunSucceeded(output: ["text": "done"]))
        default: return stepSucceeded(n)
        }
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
                met: scenario.hasPrefix("1.") ? value / ceiling >= 0.8 : nil,
                key: scenario.hasPrefix("1.") ? "append" : "durability.append"))
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

    static func trigger(_ i: Int, tag: String, intent: String = "bench.transform") -> (id: String, payload: [UInt8]) {
        let id = "\(tag)-\(i)"
        let data: JSONValue = [
            "message_id": .string("m-\(id)"), "intent": .string(intent),
            "entities": ["title": .string("t\(i)"), "n": .number(Double(i))],
            "user": ["id": "bench"], "channel": ["type": "chat", "conversation_id": "bench"],
        ]
        return (
            id,
            try! EventCodec().encode(
                CloudEvent(id: id, source: "bench", type: EventType.assistantCommandIssued, data: data))
        )
    }

    static func runID(_ triggerID: String, flow: String = "bench-transform") -> String {
        DerivedID.uuid("\(flow)/\(triggerID)")
    }

    /// `server`: the nats-server's process id, whose CPU time per run is reported beside `ledgerflow serve`'s.
    func serveScenarios(url: String, server: Int32, scenario: String, runs: Int, singles: Int, query: Bool) async throws
    {
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

        // The observer sees each run's final output (one message per run), and asks the API about the read models
        // only once a run's output is out: it neither decodes the runs' events nor polls the engine meanwhile.
        let watch = try OutputWatch(connection: outside)
        defer { watch.stop() }
        try await outside.flush()
        let isMain = scenario.hasPrefix("2.")
        let heap = HeapSampler(pid: serve.process.processIdentifier)

        // Throughput: every trigger appended as fast as the stream accepts them; the window ends when every run's
        // output is out and the read models have applied the whole log.
        let triggers = (0..<runs).map { Self.trigger($0, tag: "tp-\(scenario.prefix(1))") }
        let runIDs = triggers.map { Self.runID($0.id) }
        let cpuAtStart = (
            serve: ProcStatus.cpuSeconds(pid: serve.process.processIdentifier), nats: ProcStatus.cpuSeconds(pid: server)
        )
        let start = ContinuousClock.now
        try await appendAll(
            ledger, payloads: triggers.map(\.payload), subject: { _ in Subjects.assistantCommandIssued },
            ids: { triggers[$0].id })
        let deadline = ContinuousClock.now + .seconds(quick ? 120 : 600)
        while watch.count < runs, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        try await serve.waitCaughtUp()
        var end = ContinuousClock.now
        let cpuAtEnd = (
            serve: ProcStatus.cpuSeconds(pid: serve.process.processIdentifier), nats: ProcStatus.cpuSeconds(pid: server)
        )
        let done = watch.count
        guard done >= runs else { throw RuntimeError("only \(done) of \(runs) runs finished; see \(serve.logFile)") }
        // After the window: the read models must hold every run SUCCEEDED (one GET per run). A run not there yet
        // (its FlowRunSucceeded appended just after the projector caught up) is asked again, and the window then
        // ends when it shows SUCCEEDED.
        let client = try RawHTTP(port: serve.port)
        let marker = Array(#""status":"SUCCEEDED""#.utf8)
        var late = 0
        for runID in runIDs {
            var (status, answer) = try client.get("/automation/runs/\(runID)", token: LedgerflowServe.token)
            if status == 200, answer.firstRange(of: marker) != nil { continue }
            late += 1
            let limit = ContinuousClock.now + .seconds(30)
            while !(status == 200 && answer.firstRange(of: marker) != nil) {
                guard ContinuousClock.now < limit else {
                    throw RuntimeError(
                        "run \(runID) is not SUCCEEDED in the read model: \(status) \(String(decoding: answer.prefix(300), as: UTF8.self))"
                    )
                }
                try await Task.sleep(for: .microseconds(200))
                (status, answer) = try client.get("/automation/runs/\(runID)", token: LedgerflowServe.token)
            }
            end = ContinuousClock.now
        }
        let elapsed = (end - start) / .seconds(1)
        say("  checked GET /automation/runs/{id}: \(runs) of \(runs) SUCCEEDED (\(late) not yet when first asked)")
        let rawCeiling = report.figures.last {
            $0.metric.hasPrefix("events appended") && $0.scenario.hasPrefix(scenario.hasPrefix("6") ? "6" : "1")
        }?.ceiling
        let eventsPerRun = 7.0
        let throughput = Double(runs) / elapsed
        let ceiling = rawCeiling.map { $0 / eventsPerRun }
        report.add(
            Figure(
                scenario: scenario,
                metric: "runs completed/s (trigger appended → output out and read model SUCCEEDED)",
                value: throughput,
                unit: "runs/s", ceiling: ceiling,
                ceilingName: "raw js_PublishAsync ÷ 7 messages per run",
                target: isMain ? "≥ 5000 runs/s" : "ratio ≥ 0.8",
                met: isMain ? throughput >= 5000 : ceiling.map { throughput / $0 >= 0.8 },
                note:
                    "every run checked SUCCEEDED through GET /automation/runs/{id} after the window (\(late) of \(runs) not yet when first asked)",
                key: isMain ? "e2e.throughput" : "durability.e2e.throughput"))

        // CPU time per run: steadier than the rates on a machine whose neighbours come and go, and what a change to
        // the engine's work per run moves.
        if let serveStart = cpuAtStart.serve, let serveEnd = cpuAtEnd.serve, let natsStart = cpuAtStart.nats,
            let natsEnd = cpuAtEnd.nats
        {
            report.add(
                Figure(
                    scenario: scenario,
                    metric: "CPU time of ledgerflow serve per run (user + system, throughput window)",
                    value: (serveEnd - serveStart) / Double(runs) * 1e6, unit: "µs",
                    note: String(
                        format:
                            "nats-server beside it: %.0f µs per run; from /proc/<pid>/stat (10 ms ticks) over the whole window, %d runs",
                        (natsEnd - natsStart) / Double(runs) * 1e6, runs),
                    key: isMain ? "e2e.cpu" : nil))
        } else {
            say("  (CPU time per run not reported: /proc/<pid>/stat could not be read)")
        }

        // Latency: one run at a time, from the trigger's append until the read model shows SUCCEEDED: the observer
        // waits for the run's output, then asks the API (every 100 µs until it says SUCCEEDED).
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        var latencies: [Double] = []
        var timed: [(runID: String, sent: Date, seen: Date, millis: Double)] = []
        var polls = 0
        for i in 0..<singles {
            let trigger = Self.trigger(i, tag: "lat-\(scenario.prefix(1))")
            let runID = Self.runID(trigger.id)
            let sent = Date()
            let t0 = ContinuousClock.now
            _ = try await ledger.send(
                payload: trigger.payload, id: trigger.id, on: Subjects.assistantCommandIssued, retry: .once)
            polls += try await waitSucceeded(runID: runID, watch: watch, client: client, marker: marker)
            let micros = (ContinuousClock.now - t0) / .microseconds(1)
            let seen = Date()
            _ = histogram.record(UInt64(max(1, micros)))
            latencies.append(micros / 1000)
            timed.append((runID, sent, seen, micros / 1000))
        }
        report.samples[isMain ? "latency.default" : "latency.always"] = latencies
        let peakHeap = heap.stop()
        // Where the time goes, from the log's own clock (JetStream stamps each message when it stores it; the bench
        // reads the same wall clock before the send and when it sees SUCCEEDED), for every run.
        var segments: [(millis: Double, parts: [Double])] = []
        var appendCounts: [Int] = []
        for run in timed {
            let events = try await ledger.read(subject: Subjects.run(run.runID))
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
            // Appends one after another: the events stored at one instant went in one atomic batch.
            var instants: Set<String> = []
            for event in events.dropFirst() {
                if let time = try await ledger.message(at: event.sequence)?.time { instants.insert(time) }
            }
            appendCounts.append(instants.count)
            let parts = [
                triggerTime.timeIntervalSince(run.sent), startedStored.timeIntervalSince(triggerTime),
                endStored.timeIntervalSince(startedStored), run.seen.timeIntervalSince(endStored),
            ].map { $0 * 1000 }
            segments.append((run.millis, parts))
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let p50 = Double(histogram.valueAtPercentile(50)) / 1000
        let p99 = Double(histogram.valueAtPercentile(99)) / 1000
        // The slowest 1 % of runs (at least one) beside the median run, segment by segment. The bench's wall clock
        // and nats-server's are the same clock here (one machine).
        let tail = segments.sorted { $0.millis > $1.millis }.prefix(max(1, (segments.count + 99) / 100))
        let partNames = [
            "trigger sent → stored", "stored → FlowRunStarted stored", "FlowRunStarted → FlowRunSucceeded stored",
            "FlowRunSucceeded stored → SUCCEEDED seen",
        ]
        let tailSplit =
            segments.isEmpty || tail.isEmpty
            ? nil
            : "from the log's own timestamps, each of the \(tail.count) slowest runs (the slowest 1 %) as "
                + partNames.joined(separator: " + ") + ": "
                + tail.map { run in
                    String(format: "%.2f ms = ", run.millis)
                        + run.parts.map { String(format: "%.2f", $0) }.joined(separator: " + ")
                }.joined(separator: "; ") + "; the median run of all \(segments.count): "
                + partNames.indices.map { i in String(format: "%.2f", median(segments.map { $0.parts[i] })) }
                .joined(separator: " + ")
        let split = String(
            format:
                "from the log's own timestamps (read after the runs), medians over every run: trigger stored → FlowRunStarted stored %.2f ms; FlowRunStarted → FlowRunSucceeded stored %.2f ms (%ld appends after FlowRunStarted, each waiting for the previous one's acknowledgement; with serve --atomic-batches, off by default, consecutive transform steps go in one atomic batch and count as one); the observer asked the API %.1f times per run on average, only after the run's output was out",
            segments.isEmpty ? 0 : median(segments.map { $0.parts[1] }),
            segments.isEmpty ? 0 : median(segments.map { $0.parts[2] }),
            appendCounts.sorted().dropFirst(appendCounts.count / 2).first ?? 0, Double(polls) / Double(max(singles, 1)))
        report.add(
            Figure(
                scenario: scenario, metric: "single-run latency p50 (trigger appended → read model SUCCEEDED)",
                value: p50, unit: "ms", target: isMain ? "≤ 1.5 ms" : nil, met: isMain ? p50 <= 1.5 : nil,
                note: split, key: isMain ? "e2e.p50" : nil))
        report.add(
            Figure(
                scenario: scenario, metric: "single-run latency p99", value: p99, unit: "ms",
                target: isMain ? "≤ 5 ms" : nil, met: isMain ? p99 <= 5 : nil, note: tailSplit,
                key: isMain ? "e2e.p99" : nil))
        if isMain {
            report.add(
                Figure(
                    scenario: "5. memory",
                    metric: String(
                        format:
                            "heap (RssAnon) of ledgerflow serve, peak sampled during scenario 2 (beside it then: %.1f MB of mapped LMDB and binary pages, RssFile)",
                        peakHeap.file),
                    value: peakHeap.anon, unit: "MB", target: "≤ 150 MB", met: peakHeap.anon <= 150,
                    note: String(
                        format:
                            "sampled from /proc every 20 ms; the mapped pages (RssFile) are page cache the kernel reclaims under pressure; peak RSS of both (VmHWM) %.1f MB",
                        serve.peakRSSMegabytes()),
                    key: "memory.e2e"))
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

    func statusField(_ name: String) -> Double { ProcStatus.field(name, pid: process.processIdentifier) }
}

extension Bench {
    /// Waits for `runID`'s output, then asks the API every 100 µs until the read model shows it SUCCEEDED.
    /// Returns how many times it asked.
    func waitSucceeded(runID: String, watch: OutputWatch, client: RawHTTP, marker: [UInt8]) async throws -> Int {
        guard await watch.wait(for: runID, timeout: .seconds(30)) else {
            throw RuntimeError("run \(runID) published no output within 30 s")
        }
        let limit = ContinuousClock.now + .seconds(30)
        var asked = 0
        while true {
            let (status, answer) = try client.get("/automation/runs/\(runID)", token: LedgerflowServe.token)
            asked += 1
            if status == 200, answer.firstRange(of: marker) != nil { return asked }
            guard ContinuousClock.now < limit else { throw RuntimeError("run \(runID) is not SUCCEEDED after 30 s") }
            try await Task.sleep(for: .microseconds(100))
        }
    }
}
