import Foundation
import LedgerCore

extension Bench {
    // MARK: 7. The hash chain's cost (CPU time, so the machine's load hardly moves it)

    /// What the hash chain adds to each append (hashing the encoded event, for the next event's `prevhash`) beside
    /// what the append already pays to encode it, and how fast `ledgerflow verify` checks events (no NATS: the
    /// verifier over encoded events in memory).
    func chain(events count: Int) {
        var payloads: [[UInt8]] = []
        payloads.reserveCapacity(count)
        var previous: String?
        let encodeStart = Self.threadCPUSeconds()
        for i in 0..<count {
            let body = LedgerEvent.Body.stepAttemptSucceeded(
                StepAttemptSucceeded(
                    step_id: "step-\(i % 3)", attempt: 1,
                    output: ["value": .number(Double(i)), "note": "benchmark event"],
                    started_at: "2026-11-23T10:00:00.000Z", finished_at: "2026-11-23T10:00:00.001Z"))
            payloads.append(
                try! body.encode(
                    id: "ev-\(i)", time: "2026-11-23T10:00:00.001Z", runid: "r\(i / 7)", flowid: "bench",
                    flowversion: 1, prevhash: i % 7 == 0 ? nil : previous ?? "", codec: EventCodec()))
            previous = "sha256:" + String(repeating: "0", count: 64)
        }
        let encode = (Self.threadCPUSeconds() - encodeStart) / Double(count)
        let size = payloads.reduce(0) { $0 + $1.count } / max(count, 1)
        say("\n7. hash chain: \(count) events of ~\(size) bytes with prevhash (SHA extensions: \(SHA256.accelerated))")
        let hashStart = Self.threadCPUSeconds()
        var sink = 0
        for payload in payloads { sink &+= ChainLink(sequence: 1, payload: payload).hash.utf8.count }
        let hash = (Self.threadCPUSeconds() - hashStart) / Double(count)
        precondition(sink == count * 71)
        report.add(
            Figure(
                scenario: "7. hash chain", metric: "hashing an appended event for the next prevhash (CPU)",
                value: hash * 1e6, unit: "µs/event", ceiling: encode * 1e6,
                ceilingName: "encoding the same event (JSONEncoder)",
                note: "SHA extensions \(SHA256.accelerated ? "used" : "absent")"))

        // Verification: the events as they would sit on runs' subjects, each naming the one before.
        var log: [(String, [UInt8])] = []
        log.reserveCapacity(count)
        var last: [String: [UInt8]] = [:]
        for i in 0..<count {
            let run = "ledger.run.r\(i / 7)"
            let prevhash = last[run].map { #","prevhash":"\#(EventChain.hash(of: $0))""# } ?? ""
            let type = i % 7 == 0 ? "FlowRunStarted" : "StepAttemptSucceeded"
            let payload = Array(
                #"{"data":{"output":{"note":"benchmark event","value":\#(i)}},"id":"ev-\#(i)","type":"\#(type)"\#(prevhash)}"#
                    .utf8)
            last[run] = payload
            log.append((run, payload))
        }
        var verifier = LogVerifier(contiguous: true)
        let verifyStart = Self.threadCPUSeconds()
        for (i, (subject, payload)) in log.enumerated() {
            verifier.check(sequence: UInt64(i + 1), subject: subject, payload: payload)
        }
        let verify = Self.threadCPUSeconds() - verifyStart
        precondition(verifier.isClean, "\(verifier.problems.prefix(3))")
        report.add(
            Figure(
                scenario: "7. hash chain", metric: "ledgerflow verify's checks, without reading the log (CPU)",
                value: Double(count) / verify, unit: "events/s"))
    }

    /// The process's CPU time (its other threads are idle while this scenario runs).
    static func threadCPUSeconds() -> Double {
        Double(clock()) / Double(CLOCKS_PER_SEC)
    }
}
