import Foundation
import LedgerTestSupport
import Testing

/// The command line's integration settings (event subjects, discovery cache, simulators' switches): refused with
/// what was wrong and what to do before anything is opened.
@Suite struct IntegrationOptionsTests {
    static let unreachable = ["--nats-url", "nats://127.0.0.1:1"]

    @Test func badSettingsAreRefusedSayingWhatToGive() throws {
        let cases: [(arguments: [String], environment: [String: String], expected: String)] = [
            (["serve", "--event-subjects", "ledger.>"], [:], "--event-subjects: \"ledger.>\" overlaps ledger.>"),
            (["serve", "--event-subjects", ">"], [:], "would capture NATS system"),
            (
                ["serve"], ["LEDGERFLOW_EVENT_SUBJECTS": "events.>, events.x"],
                "LEDGERFLOW_EVENT_SUBJECTS: \"events.x\" overlaps"
            ),
            (["serve", "--event-subjects", " , "], [:], "give at least one subject"),
            (["serve", "--discovery-cache-ttl", "forever"], [:], "is not a duration from 0 to 1d"),
            (["serve", "--discovery-cache-ttl", "2d"], [:], "is not a duration from 0 to 1d"),
            (
                ["serve"], ["LEDGERFLOW_DISCOVERY_CACHE_ENTRIES": "-1"],
                "LEDGERFLOW_DISCOVERY_CACHE_ENTRIES: \"-1\" is not a whole number"
            ),
            (["simulate", "calendar", "--failure-rate", "2"], [:], "give a probability from 0 to 1"),
            (["simulate", "discovery", "--failure-rate", "nan"], [:], "give a probability from 0 to 1"),
            (["simulate", "notifications", "--latency-ms=-5"], [:], "give a delay from 0 to 600000 ms"),
        ]
        for (arguments, environment, expected) in cases {
            let (status, output) = try ledgerflow(arguments + Self.unreachable, environment: environment)
            #expect(status != 0, "\(arguments) \(environment): \(output)")
            #expect(output.contains(expected), "\(arguments) \(environment): \(output)")
        }
    }

    @Test func everySimulatorIsACommand() throws {
        for name in ["calendar", "discovery", "notifications"] {
            let (status, output) = try ledgerflow(["simulate", name, "--help"])
            #expect(status == 0, "\(name): \(output)")
            #expect(output.contains("--failure-rate") && output.contains("--latency-ms"), "\(name): \(output)")
        }
    }
}
