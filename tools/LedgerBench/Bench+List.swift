import Foundation
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerTestSupport
import Synchronization

extension Bench {
    // MARK: 9. Run listing at scale

    static let listFlows = 4

    /// The listing's queries: a name, the path, and what each run listed must satisfy.
    static let listQueries: [(key: String, path: String, check: String?)] = [
        ("all", "/automation/runs?limit=50", nil),
        ("flow", "/automation/runs?flow_id=list-1&limit=50", "list-1"),
        ("failed", "/automation/runs?status=FAILED&limit=50", "FAILED"),
    ]

    /// Fills the read models with `sizes` runs in turn (the log grows; a `ledgerflow serve` catches up with it) and
    /// measures the listing at each size; the largest against the smallest.
    func list(url: String, sizes: [Int]) async throws {
        say(
            "\n9. run listing: GET /automation/runs (limit=50; by flow_id; by status=FAILED) at \(sizes.map(String.init).joined(separator: " and ")) runs"
        )
        let ledger = try await freshLedger(url: url)
        defer { ledger.close() }
        let directory = "\(scratch)/serve-list"
        let port = LocalNATSServer.freePort()
        var serve: LedgerflowServe?
        defer { serve?.stop() }
        var filled = 0
        var measured: [Int: [String: ClosedLoopResult]] = [:]
        for size in sizes {
            // The runs are appended while no `serve` runs (it never sees a run half written), then a `serve`
            // started on the same data directory catches up with them.
            serve?.stop()
            let fillStart = ContinuousClock.now
            try await fillRuns(ledger, from: filled, to: size)
            let appended = (ContinuousClock.now - fillStart) / .seconds(1)
            let projectStart = ContinuousClock.now
            let started = try LedgerflowServe(
                binary: options.ledgerflow, natsURL: url, port: port, dataDirectory: directory)
            serve = started
            try await started.waitAnswering()
            try await started.waitCaughtUp(timeout: .seconds(1800))
            let projected = (ContinuousClock.now - projectStart) / .seconds(1)
            let quiet = await settle(serve: started)
            report.remark(
                String(
                    format:
                        "9. run listing: runs %d to %d (2 events each) generated and appended in %.1f s, applied by ledgerflow serve (started on the same data directory) in %.1f s; then ",
                    filled, size, appended, projected) + quiet)
            filled = size
            var results: [String: ClosedLoopResult] = [:]
            for query in Self.listQueries {
                try await checkListing(port: started.port, path: query.path, check: query.check)
                results[query.key] = try await closedLoop(
                    port: started.port, path: query.path, connections: 2,
                    duration: quick ? .milliseconds(300) : .seconds(5), minimum: quick ? 3 : 4,
                    cap: quick ? .seconds(30) : .seconds(60))
            }
            measured[size] = results
        }
        guard let small = sizes.first, let large = sizes.last, let base = measured[small], let top = measured[large]
        else { return }
        for query in Self.listQueries {
            guard let b = base[query.key], let t = top[query.key] else { continue }
            let name = "GET \(query.path)"
            report.add(
                Figure(
                    scenario: "9. run listing", metric: "\(name) at \(small) runs: requests/s", value: b.rps,
                    unit: "req/s", note: b.summary))
            report.add(
                Figure(
                    scenario: "9. run listing", metric: "\(name) at \(large) runs: requests/s", value: t.rps,
                    unit: "req/s", ceiling: b.rps, ceilingName: "the same at \(small) runs", target: "ratio ≥ 0.8",
                    met: t.rps / b.rps >= 0.8, note: t.summary, key: "list.\(query.key)"))
            report.add(
                Figure(
                    scenario: "9. run listing", metric: "\(name) at \(large) runs: p99", value: t.p99, unit: "ms",
                    ceiling: b.p99, ceilingName: "p99 at \(small) runs"))
        }
    }

    /// Waits (at most a minute) until the machine is quiet after a load: `serve` idle (under 5 % of a core over a
    /// second) and the kernel's dirty and writeback pages under 32 MB. `serve` can stay busy for about 30 s after
    /// it has caught up, and a load leaves the LMDB file's and nats-server's pages to write back; measured at once,
    /// the first query shared the cores and the disk with that (p99 2-3 ms against 0.7 for the last one).
    /// Says how long it waited and what it saw (dirty pages are counted for the whole machine, so another process
    /// writing keeps it waiting the whole minute; the remark then says the listing was measured while busy).
    func settle(serve: LedgerflowServe) async -> String {
        let start = ContinuousClock.now
        let pid = serve.process.processIdentifier
        var idle = false
        var pending = Self.pendingWritebackMegabytes()
        while ContinuousClock.now - start < (quick ? .seconds(2) : .seconds(60)) {
            let before = ProcStatus.cpuSeconds(pid: pid)
            try? await Task.sleep(for: .seconds(1))
            let after = ProcStatus.cpuSeconds(pid: pid)
            idle = before.flatMap { b in after.map { $0 - b < 0.05 } } ?? false  // unreadable: serve is gone
            pending = Self.pendingWritebackMegabytes()
            if idle && pending < 32 { break }
        }
        let waited = (ContinuousClock.now - start) / .seconds(1)
        let state = idle ? "serve idle" : "serve still busy"
        let quiet = idle && pending < 32
        return String(
            format: quiet
                ? "waited %.1f s for a quiet machine before measuring ("
                : "gave up after %.1f s waiting for a quiet machine: MEASURED WHILE BUSY (",
            waited)
            + state + String(format: ", %.0f MB dirty or in writeback)", pending)
    }

    /// The kernel's dirty and writeback pages (/proc/meminfo), in MB; 0 when unreadable.
    static func pendingWritebackMegabytes() -> Double {
        guard let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return 0 }
        var kilobytes = 0.0
        for line in info.split(separator: "\n") where line.hasPrefix("Dirty:") || line.hasPrefix("Writeback:") {
            kilobytes += line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0
        }
        return kilobytes / 1024
    }

    /// Appends runs `from..<to` straight to the log: per run a `FlowRunStarted` and its end (every 10th
    /// `FlowRunFailed`, the others `FlowRunSucceeded`), of 4 flows in turn, with the ids a signal would derive.
    func fillRuns(_ ledger: Ledger, from: Int, to: Int) async throws {
        let chunk = 50_000
        let base: Int64 = 1_795_000_000_000
        var first = from
        while first < to {
            let lower = first
            let upper = min(lower + chunk, to)
            var payloads: [[UInt8]] = []
            var subjects: [String] = []
            payloads.reserveCapacity((upper - lower) * 2)
            subjects.reserveCapacity((upper - lower) * 2)
            let codec = EventCodec()
            for r in lower..<upper {
                let flow = "list-\(r % Self.listFlows)"
                let key = "e-\(r)"
                let run = DerivedID.uuid("\(flow)/\(key)")
                let start = LedgerEvent.Body.runStarted(
                    FlowRunStarted(
                        run_id: run, flow_id: flow, flow_version: 1, definition_hash: "h", mode: .live,
                        trigger: RunTrigger(kind: .event), actor: "bench", input: ["n": .number(Double(r))],
                        step_ids: ["a"], dedup_key: key, message_id: nil, channel: nil))
                let end: LedgerEvent.Body =
                    r % 10 == 9
                    ? .runFailed(
                        FlowRunFailed(error: RunError(code: "bench", message: "a failed run to list", step_id: "a")))
                    : .runSucceeded(FlowRunSucceeded(output: ["n": .number(Double(r))]))
                payloads.append(
                    try start.encode(
                        id: "l-\(r)-0", time: Timestamp.format(millis: base + Int64(r)), runid: run, flowid: flow,
                        flowversion: 1, codec: codec))
                payloads.append(
                    try end.encode(
                        id: "l-\(r)-1", time: Timestamp.format(millis: base + Int64(r) + 1), runid: run, flowid: flow,
                        flowversion: 1, codec: codec))
                subjects.append(Subjects.run(run))
                subjects.append(Subjects.run(run))
            }
            let names = subjects
            try await appendAll(
                ledger, payloads: payloads, subject: { names[$0] }, ids: { "l-\(lower + $0 / 2)-\($0 % 2)" })
            first = upper
        }
    }

    /// One request, checked: 50 runs, each of the flow or status asked for.
    func checkListing(port: Int, path: String, check: String?) async throws {
        let client = try RawHTTP(port: port)
        let (status, body) = try client.get(path, token: LedgerflowServe.token)
        guard status == 200,
            let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let runs = object["runs"] as? [[String: Any]]
        else {
            throw RuntimeError("GET \(path) answered \(status): \(String(decoding: body.prefix(300), as: UTF8.self))")
        }
        guard runs.count == 50 else { throw RuntimeError("GET \(path) listed \(runs.count) runs, not 50") }
        if let check {
            for run in runs where run["flow_id"] as? String != check && run["status"] as? String != check {
                throw RuntimeError("GET \(path) listed a run that is not \(check): \(run["run_id"] ?? "?")")
            }
        }
    }
}

struct ClosedLoopResult {
    var rps: Double
    var p50: Double
    var p99: Double
    var count: Int
    var connections: Int

    var summary: String {
        String(
            format: "p50 %.2f ms, p99 %.2f ms; %d requests over %d keep-alive connections", p50, p99, count, connections
        )
    }
}

/// What the threads of a closed loop share.
private final class LoopShared: Sendable {
    let latencies = Mutex<[Double]>([])
    let failure = Mutex<String?>(nil)
    let remaining: Mutex<Int>
    init(connections: Int) { remaining = Mutex(connections) }
}

extension Bench {
    /// A closed loop: `connections` clients (a thread each) ask `path` one request after another until `duration`
    /// has passed and `minimum` requests are done (never longer than `cap`). Requests/s counts every request over
    /// the whole time.
    func closedLoop(
        port: Int, path: String, connections: Int, duration: Duration, minimum: Int, cap: Duration
    ) async throws -> ClosedLoopResult {
        let shared = LoopShared(connections: connections)
        let start = ContinuousClock.now
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            for _ in 0..<connections {
                let thread = Thread {
                    defer {
                        if shared.remaining.withLock({
                            $0 -= 1
                            return $0
                        }) == 0 {
                            continuation.resume()
                        }
                    }
                    let client: RawHTTP
                    do { client = try RawHTTP(port: port) } catch {
                        shared.failure.withLock { $0 = "\(error)" }
                        return
                    }
                    while true {
                        let elapsed = ContinuousClock.now - start
                        let done = shared.latencies.withLock { $0.count }
                        if (elapsed >= duration && done >= minimum) || elapsed >= cap { return }
                        if shared.failure.withLock({ $0 }) != nil { return }
                        let t0 = ContinuousClock.now
                        do {
                            let (status, _) = try client.get(path, token: LedgerflowServe.token)
                            guard status == 200 else {
                                shared.failure.withLock { $0 = "GET \(path) answered \(status)" }
                                return
                            }
                        } catch {
                            shared.failure.withLock { $0 = "GET \(path): \(error)" }
                            return
                        }
                        let ms = (ContinuousClock.now - t0) / .microseconds(1) / 1000
                        shared.latencies.withLock { $0.append(ms) }
                    }
                }
                thread.start()
            }
        }
        let elapsed = (ContinuousClock.now - start) / .seconds(1)
        if let failure = shared.failure.withLock({ $0 }) { throw RuntimeError(failure) }
        let sorted = shared.latencies.withLock { $0 }.sorted()
        guard !sorted.isEmpty else { throw RuntimeError("GET \(path): no request finished") }
        func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        return ClosedLoopResult(
            rps: Double(sorted.count) / elapsed, p50: percentile(0.5), p99: percentile(0.99), count: sorted.count,
            connections: connections)
    }
}
