import LedgerTestSupport
import Testing

/// The worker settings of `serve`, checked before anything is opened.
@Suite struct WorkerOptionsTests {
    @Test func aLeaseThatCannotWorkIsRefusedSayingWhatIsValid() throws {
        for value in ["0s", "100ms", "11m", "soon", "-5s"] {
            let (status, output) = try ledgerflow(["serve", "--lease-ttl=\(value)", "--nats-url", "nats://127.0.0.1:1"])
            #expect(status != 0, "\(value): \(output)")
            #expect(output.contains("--lease-ttl"), "\(value): \(output)")
            #expect(output.contains("from 500ms to 10m"), "what a valid lease is: \(output)")
        }
    }

    @Test func aWorkerIDThatIsNoSubjectTokenIsRefused() throws {
        for value in ["a.b", "a b", "w*", String(repeating: "x", count: 65), "é"] {
            let (status, output) = try ledgerflow(["serve", "--worker-id=\(value)", "--nats-url", "nats://127.0.0.1:1"])
            #expect(status != 0, "\(value): \(output)")
            #expect(output.contains("must be 1 to 64 letters, digits, - or _"), "\(value): \(output)")
        }
    }

    @Test func aLimitOfRunsInFlightOutsideOneToAMillionIsRefused() throws {
        for value in ["0", "-1", "lots", "1000001", "99999999999999999999", "1e3", " 5"] {
            let (status, output) = try ledgerflow(
                ["serve", "--max-runs-in-flight=\(value)", "--nats-url", "nats://127.0.0.1:1"])
            #expect(status != 0, "\(value): \(output)")
            #expect(output.contains("is not a whole number from 1 to 1000000"), "\(value): \(output)")
            #expect(output.contains("the runs this worker drives at once"), "what the setting does: \(output)")
        }
    }
}
