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
}
