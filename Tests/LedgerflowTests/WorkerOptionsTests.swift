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
}
