import Foundation
import LedgerCore
import LedgerDevServices
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
            (
                ["simulate", "webhook"], [:],
                "give the secret the flow signs with: --secret S or LEDGERFLOW_WEBHOOK_SECRET"
            ),
            (["simulate", "webhook", "--secret", "s", "--port", "0"], [:], "--port 0: give a port from 1 to 65535"),
        ]
        for (arguments, environment, expected) in cases {
            let unreachable = arguments.contains("webhook") ? [] : Self.unreachable
            let (status, output) = try ledgerflow(arguments + unreachable, environment: environment)
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

    /// `ledgerflow simulate webhook`: a signed delivery is verified (503 first with --fail-first 1, then 200 for the
    /// same key); a bad signature is 401; each delivery is printed.
    @Test func theWebhookReceiverChecksSignaturesAndFailsFirstWhenAsked() async throws {
        let port = LocalNATSServer.freePort()
        let directory = TemporaryDirectory("webhook-receiver")
        let log = "\(directory.path)/receiver.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Fixtures.ledgerflowBinary)
        process.arguments = ["simulate", "webhook", "--port", String(port), "--fail-first", "1"]
        process.environment = ProcessInfo.processInfo.environment.merging(["LEDGERFLOW_WEBHOOK_SECRET": "s3cret"]) {
            $1
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let client = TestHTTPClient(port: port, timeout: 5)
        // A process of its own, started while the other suites load both cores: a generous deadline, and what it
        // printed when it does not answer.
        do {
            try await eventually("the receiver answers", timeout: .seconds(60)) {
                guard process.isRunning else { return true }
                return await client.status("/") != nil
            }
        } catch {
            Issue.record("the receiver printed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            throw error
        }
        #expect(process.isRunning, "the receiver exited: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let body: JSONValue = ["type": "FlowOutputProduced", "data": ["kind": "final", "text": "hola"]]
        func post(secret: String) async throws -> Int {
            let signature = WebhookSignature.value(
                secret: secret, timestamp: Int64(Date().timeIntervalSince1970), body: Array(body.compactJSON.utf8))
            return try await client.json(
                "POST", "/replies", body, token: nil,
                headers: ["Ledgerflow-Signature": signature, "Idempotency-Key": "run-1/webhook"]
            ).0
        }
        #expect(try await post(secret: "s3cret") == 503)
        #expect(try await post(secret: "s3cret") == 200)
        #expect(try await post(secret: "wrong") == 401)
        let printed = try String(contentsOfFile: log, encoding: .utf8)
        #expect(
            printed.contains("key=run-1/webhook delivery=1 signature=verified kind=final text=\"hola\" -> 503"),
            "\(printed)")
        #expect(printed.contains("delivery=2 signature=verified kind=final text=\"hola\" -> 200"), "\(printed)")
        #expect(printed.contains("signature=INVALID"), "\(printed)")
    }
}
