import Foundation
import LedgerDevServices
import LedgerTestSupport
import Testing

extension Integration {
    /// `serve` started before its NATS is up waits for it instead of exiting (issue 16, item 3).
    @Suite struct ServeStartTests {
        @Test func serveStartedWhileNATSIsDownWaitsAndStartsWhenItComesUp() async throws {
            TestServer.shared.kill()
            var restarted = false
            defer { if !restarted { try? TestServer.shared.restart() } }
            let data = TemporaryDirectory("serve")
            let serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path, logLevel: "info")
            defer { serve.kill() }
            try await eventually("serve says it waits for NATS") {
                guard serve.process.isRunning else { return true }
                return ((try? String(contentsOfFile: serve.logFile, encoding: .utf8)) ?? "")
                    .contains("NATS is not reachable yet")
            }
            #expect(serve.process.isRunning, "serve waits instead of exiting; see \(serve.logFile)")
            try TestServer.shared.restart()
            restarted = true
            try await serve.waitReady()
        }
    }
}
