import Foundation
import Histogram
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerNATS
import LedgerTestSupport

extension Bench {
    // MARK: 8. seq40: 40 sequential transform steps, one run at a time (the workload of Windmill's benchmark)

    static let seq40Steps = 40

    /// One flow of 40 `transform` steps, each depending on the one before and reading its output.
    static var seq40Flow: JSONValue {
        var steps: [JSONValue] = []
        for k in 1...seq40Steps {
            var step: [String: JSONValue] = ["id": .string("s\(k)"), "action": "transform"]
            if k == 1 {
                step["with"] = ["value": ["n": "{{trigger.entities.n}}", "step": .number(1)]]
            } else {
                step["with"] = ["value": ["n": .string("{{steps.s\(k - 1).output.n}}"), "step": .number(Double(k))]]
                step["depends_on"] = [.string("s\(k - 1)")]
            }
            steps.append(.object(step))
        }
        return [
            "id": "bench-seq40", "name": "40 sequential transforms",
            "trigger": ["event": "AssistantCommandIssued", "intent": "bench.seq40"],
            "steps": .array(steps),
            "output": ["text": .string("done {{steps.s\(seq40Steps).output.n}}")],
        ]
    }

    static let seq40Definitions =
        "seq40's split per step, from the log's own timestamps: a transform step is one `StepAttemptSucceeded` (a local action runs inside the decision: no `StepAttemptStarted`), whose `started_at` and `finished_at` are the engine's clock when it decided the step, in whole milliseconds (each taken as the middle of its millisecond, so the means are unbiased; single values are ±0.5 ms). "
        + "created = when JetStream stored the event that made the step runnable (the previous step's `StepAttemptSucceeded`; `FlowRunStarted` for the first step); "
        + "assignment = created → `started_at`; execution = `started_at` → `finished_at`; transition = `finished_at` → when JetStream stored the step's own `StepAttemptSucceeded` (which is the next step's created). "
        + "The three add up exactly to the time between two consecutive steps' events in the log. "
        + "Steps appended together in one atomic batch (with `serve --atomic-batches`, off by default: consecutive transforms are decided ahead and stored all at once) are stored at one instant: there, the next step is created when the one before it was decided (its `finished_at`), its transition is 0, and the batch's round trip falls in the transition of its last step, so the steps' spans still add up to the run. "
        + "JetStream stamps a message when it stores it, before its fsync and acknowledgement: with `sync_interval: always` the wait for the fsync falls in the next step's assignment. "
        + "The whole run is measured from outside: trigger appended → the run's output out and GET /automation/runs/{id} says SUCCEEDED. "
        + "Published figures of that benchmark for comparison (40 sequential lightweight tasks, one worker, a 2-vCPU AWS m4.large): "
        + Plots.published.map { "\($0.0) \(String(format: "%g", $0.1)) s" }.joined(separator: ", ") + "."

    func seq40(url: String, synced: Bool, runs: Int) async throws {
        let scenario = synced ? "8. seq40, sync_interval: always" : "8. seq40"
        say(
            "\n\(scenario): one flow of \(Self.seq40Steps) sequential transform steps, \(runs) runs triggered one at a time (after 1 warm-up run)"
        )
        // The ceiling: a run's 44 messages (trigger, FlowRunStarted, 40 steps, its output, FlowRunSucceeded) appended
        // one after another, each waiting for its acknowledgement, on a raw cnats connection.
        let messages = Self.seq40Steps + 4
        let scratchLedger = try await freshLedger(url: url)
        let payloads = (0..<(messages * max(runs, 5))).map { Self.event($0, run: "r") }
        let roundTrips = try await Task.detached {
            try CNATSRawConnection(url: url).publishSequentially(subject: "ledger.bench", payloads: payloads)
        }.value.sorted()
        // The same appends through Ledgerflow's own path (Ledger.send: the publisher's queue, cnats' asynchronous
        // publish, its delivery thread for the acknowledgement, the awaiting task resumed on the pool), from a task:
        // what separates a run's appends from the raw round trips before the engine does anything.
        var ownTrips: [Double] = []
        for (index, payload) in payloads.enumerated() {
            let start = ContinuousClock.now
            _ = try await scratchLedger.send(
                payload: payload, id: "seq40-own-\(synced)-\(index)", on: "ledger.bench", retry: .once)
            ownTrips.append((ContinuousClock.now - start) / .seconds(1))
        }
        ownTrips.sort()
        scratchLedger.close()
        let ceiling = roundTrips[roundTrips.count / 2] * Double(messages) * 1000
        let ownPath = ownTrips[ownTrips.count / 2] * Double(messages) * 1000

        let ledger = try await freshLedger(url: url)
        defer { ledger.close() }
        let outside = try await NATSConnection.connect(url: url, name: "bench-observer", logger: logger)
        defer { outside.close() }
        let serve = try LedgerflowServe(
            binary: options.ledgerflow, natsURL: url,
            dataDirectory: "\(scratch)/serve-seq40-\(synced ? "always" : "default")")
        defer { serve.stop() }
        try await serve.waitReady()
        let registered = try await serve.http.json("POST", "/automation/flows", Self.seq40Flow)
        let activated = try await serve.http.json("POST", "/automation/flows/bench-seq40/activate").0
        guard registered.0 == 201, activated == 200 else {
            throw RuntimeError(
                "could not register the seq40 flow (\(registered.0) \(registered.1.compactJSON.prefix(300)), \(activated))"
            )
        }
        let watch = try OutputWatch(connection: outside)
        defer { watch.stop() }
        try await outside.flush()
        let client = try RawHTTP(port: serve.port)
        let marker = Array(#""status":"SUCCEEDED""#.utf8)

        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        var totals: [Double] = []
        var measured: [String] = []
        for i in 0...runs {
            let trigger = Self.trigger(i, tag: "seq40-\(synced ? "a" : "d")", intent: "bench.seq40")
            let runID = Self.runID(trigger.id, flow: "bench-seq40")
            let t0 = ContinuousClock.now
            _ = try await ledger.send(
                payload: trigger.payload, id: trigger.id, on: Subjects.assistantCommandIssued, retry: .once)
            _ = try await waitSucceeded(runID: runID, watch: watch, client: client, marker: marker)
            let micros = (ContinuousClock.now - t0) / .microseconds(1)
            if i == 0 { continue }  // the warm-up run
            _ = histogram.record(UInt64(max(1, micros)))
            totals.append(micros / 1000)
            measured.append(runID)
        }
        report.samples[synced ? "seq40.always" : "seq40.default"] = totals

        // After the runs: the split per step from the log's own timestamps.
        var assignment: [Double] = []
        var execution: [Double] = []
        var transition: [Double] = []
        var inside: [Double] = []
        for runID in measured {
            var events: [(sequence: UInt64, stored: Double, body: LedgerEvent.Body)] = []
            for event in try await ledger.read(subject: Subjects.run(runID)) {
                guard
                    let stored = try await ledger.message(at: event.sequence)?.time.flatMap(Timestamp.parse)?
                        .timeIntervalSince1970,
                    let decoded = try? LedgerEvent(bytes: event.payload)
                else { continue }
                events.append((event.sequence, stored, decoded.body))
            }
            var created: Double?
            var triggerStored: Double?
            for (index, event) in events.enumerated() {
                switch event.body {
                case .runStarted(let e):
                    created = event.stored
                    if let sequence = e.trigger.sequence {
                        triggerStored = try await ledger.message(at: sequence)?.time.flatMap(Timestamp.parse)?
                            .timeIntervalSince1970
                    }
                case .stepAttemptSucceeded(let e):
                    guard let previous = created,
                        let started = Timestamp.parse(e.started_at)?.timeIntervalSince1970,
                        let finished = Timestamp.parse(e.finished_at)?.timeIntervalSince1970
                    else { continue }
                    assignment.append((started + 0.0005 - previous) * 1e6)
                    execution.append((finished - started) * 1e6)
                    // A step appended in one atomic batch with the next one: the next was runnable once this one
                    // was decided; the batch's round trip falls in the transition of its last step.
                    let next = index + 1 < events.count ? events[index + 1] : nil
                    if let next, case .stepAttemptSucceeded = next.body, next.sequence == event.sequence + 1,
                        next.stored == event.stored
                    {
                        transition.append(0)
                        created = finished + 0.0005
                    } else {
                        transition.append((event.stored - finished - 0.0005) * 1e6)
                        created = event.stored
                    }
                case .runSucceeded:
                    if let triggerStored { inside.append((event.stored - triggerStored) * 1e3) }
                default: break
                }
            }
        }
        func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }
        func median(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.sorted()[values.count / 2] }

        let p50 = Double(histogram.valueAtPercentile(50)) / 1000
        let p99 = Double(histogram.valueAtPercentile(99)) / 1000
        let steps = assignment.count
        report.add(
            Figure(
                scenario: scenario,
                metric: "whole run p50, \(Self.seq40Steps) steps (trigger appended → read model SUCCEEDED)",
                value: p50, unit: "ms", ceiling: ceiling,
                ceilingName: "\(messages) raw js_Publish round trips one after another, p50 of each × \(messages)",
                target: synced ? nil : "≤ 10 ms", met: synced ? nil : p50 <= 10,
                note: String(
                    format:
                        "%d runs after 1 warm-up; inside the log, trigger stored → FlowRunSucceeded stored p50 %.2f ms; %d steps split (see the definitions below)",
                    totals.count, median(inside), steps),
                key: synced ? nil : "seq40.p50"))
        report.add(
            Figure(scenario: scenario, metric: "whole run p99", value: p99, unit: "ms"))
        report.add(
            Figure(
                scenario: scenario,
                metric:
                    "\(messages) appends through Ledgerflow's append path one after another, p50 of each × \(messages)",
                value: ownPath, unit: "ms", ceiling: ceiling,
                ceilingName: "the same on a raw cnats connection (js_Publish)",
                note: String(
                    format:
                        "Ledger.send awaited from a task, no engine: the publisher's queue, cnats' asynchronous publish and its delivery thread, the task resumed on the pool; p50 of one append %.0f µs against %.0f µs raw",
                    ownTrips[ownTrips.count / 2] * 1e6, roundTrips[roundTrips.count / 2] * 1e6)))
        report.add(
            Figure(
                scenario: scenario, metric: "per step: assignment (created → started), mean", value: mean(assignment),
                unit: "µs", note: String(format: "p50 %.0f µs", median(assignment))))
        report.add(
            Figure(
                scenario: scenario, metric: "per step: execution (started → finished), mean", value: mean(execution),
                unit: "µs"))
        report.add(
            Figure(
                scenario: scenario, metric: "per step: transition (finished → next created), mean",
                value: mean(transition), unit: "µs", note: String(format: "p50 %.0f µs", median(transition))))
        if !report.remarks.contains(Self.seq40Definitions) { report.remarks.append(Self.seq40Definitions) }
    }
}
