import Foundation
import LedgerCore
import LedgerNATS
import LedgerTestSupport
import Testing

@testable import LedgerEngine

extension Integration {
    /// Three `ledgerflow serve` processes share one schedule; the scheduler's leader is killed (SIGKILL) and another
    /// takes over: across the firings of a 1-second interval schedule none is lost or doubled.
    @Suite struct SchedulerFailoverTests {
        @Test func theSchedulerFailsOverWithNoFiringLostOrDoubled() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let directories = (0..<3).map { TemporaryDirectory("scheduler-\($0)") }
            var serves: [LedgerflowServe] = []
            defer { for serve in serves { serve.kill() } }
            for i in 0..<3 {
                serves.append(
                    try LedgerflowServe(
                        binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url,
                        dataDirectory: directories[i].path,
                        arguments: ["--lease-ttl", "1s", "--worker-id", "scheduler-\(i)"]))
            }
            for serve in serves { try await serve.waitReady() }
            let flow: JSONValue = [
                "id": "tick", "trigger": ["interval": "1s", "overlap": "allow_all", "catchup_window": "1m"],
                "steps": [["id": "at", "action": "transform", "with": ["value": "{{trigger.scheduled_at}}"]]],
            ]
            #expect(try await serves[0].http.json("POST", "/automation/flows", flow).0 == 201)
            #expect(try await serves[0].http.json("POST", "/automation/flows/tick/activate").0 == 200)

            func holder() async throws -> String? {
                guard
                    let last = try await ledger.api.lastMessage(
                        stream: Ledger.workersStream, subject: SchedulerLease.key)
                else { return nil }
                return try? JSONDecoder().decode(SchedulerLease.Payload.self, from: Data(last.payload)).holder
            }
            func firings() async throws -> [ScheduleFiring] {
                try await ledger.read(subject: "ledger.firing.tick.>").compactMap { message in
                    guard let event = try? JSONDecoder().decode(LedgerEvent.self, from: Data(message.payload)),
                        case .scheduleFiring(let firing) = event.body
                    else { return nil }
                    return firing
                }
            }
            try await eventually("eight firings before the kill", timeout: .seconds(60)) {
                try await firings().count >= 8
            }
            let leader = try #require(try await holder())
            let index = try #require(Int(leader.split(separator: "-").last ?? ""))
            serves[index].kill()
            try await eventually("another process leads the scheduler", timeout: .seconds(30)) {
                let now = try await holder()
                return now != nil && now != leader
            }
            try await eventually("at least 24 firings in all", timeout: .seconds(60)) {
                try await firings().count >= 24
            }
            // Stop every scheduler, then count: every nominal second between the first and the last firing must
            // have exactly one outcome, and every started one exactly one run.
            for serve in serves { serve.kill() }
            let recorded = try await firings()
            var nominal: [Int64: Int] = [:]
            var skipped = 0
            for firing in recorded {
                let first = ScheduleSpec.millis(Timestamp.parse(firing.nominal_time)!)
                let last = firing.last_nominal_time.flatMap(Timestamp.parse).map(ScheduleSpec.millis) ?? first
                var t = first
                while t <= last {
                    nominal[t, default: 0] += 1
                    t += 1000
                }
                if firing.outcome == .skipped { skipped += firing.count ?? 1 }
            }
            let low = try #require(nominal.keys.min())
            let high = try #require(nominal.keys.max())
            let expected = Int((high - low) / 1000) + 1
            var runsPerFiring: [String: Int] = [:]
            for message in try await ledger.read(subject: "ledger.run.>") {
                guard let event = try? JSONDecoder().decode(LedgerEvent.self, from: Data(message.payload)),
                    case .runStarted(let started) = event.body, started.flow_id == "tick",
                    let at = started.trigger.scheduled_at
                else { continue }
                runsPerFiring[at, default: 0] += 1
            }
            let started = runsPerFiring.count
            let doubled = runsPerFiring.values.filter { $0 > 1 }.count + nominal.values.filter { $0 > 1 }.count
            let lost = expected - nominal.count
            print(
                "scheduler failover: firings expected \(expected), started \(started), skipped \(skipped), doubled \(doubled), lost \(lost) (leader \(leader) killed)"
            )
            #expect(expected >= 20)
            #expect(doubled == 0)
            #expect(lost == 0)
            #expect(skipped == 0)
            #expect(started == expected)
        }
    }
}
