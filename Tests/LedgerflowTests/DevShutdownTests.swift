import Foundation
import LedgerDevServices
import LedgerTestSupport
import Testing

extension Integration {
    /// Ctrl-C always stops `ledgerflow dev`, nats-server child included; a second Ctrl-C stops it at once.
    @Suite struct DevShutdownTests {
        /// `ledgerflow dev` on free ports in its own data directory, answering `/ping`.
        func startDev(_ data: TemporaryDirectory) async throws -> (Process, natsPort: Int) {
            let natsPort = LocalNATSServer.freePort()
            let httpPort = LocalNATSServer.freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Fixtures.ledgerflowBinary)
            process.arguments = [
                "dev", "--nats-port", String(natsPort), "--http-port", String(httpPort), "--data-dir", data.path,
                "--examples", Fixtures.examples.path,
            ]
            var environment = ProcessInfo.processInfo.environment
            environment["LEDGERFLOW_NATS_SERVER"] = TestServer.shared.binary
            environment["LOG_LEVEL"] = "warning"
            process.environment = environment
            let log = FileHandle(forWritingAtPath: "/dev/null")
            process.standardOutput = log
            process.standardError = log
            try process.run()
            let client = TestHTTPClient(port: httpPort, timeout: 2)
            try await eventually("ledgerflow dev answers", timeout: .seconds(90)) {
                guard process.isRunning else { throw RuntimeFailure("ledgerflow dev exited at start") }
                return await client.status("/ping") == 200
            }
            return (process, natsPort)
        }

        struct RuntimeFailure: Error { var text: String; init(_ text: String) { self.text = text } }

        func accepts(_ port: Int) -> Bool {
            let fd = LocalNATSServer.connectLoopback(port: port)
            if fd >= 0 { close(fd) }
            return fd >= 0
        }

        func waitForExit(_ process: Process) async throws {
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            try await eventually("ledgerflow dev stops", timeout: .seconds(60)) { !process.isRunning }
        }

        @Test func ctrlCStopsDevAndItsNATSServer() async throws {
            let data = TemporaryDirectory("dev")
            let (dev, natsPort) = try await startDev(data)
            dev.interrupt()
            try await waitForExit(dev)
            #expect(dev.terminationStatus == 0, "a clean stop")
            try await eventually("dev's nats-server is gone") { !accepts(natsPort) }
        }

        @Test func aSecondCtrlCStopsDevAtOnce() async throws {
            let data = TemporaryDirectory("dev")
            let (dev, natsPort) = try await startDev(data)
            dev.interrupt()
            dev.interrupt()
            try await waitForExit(dev)
            #expect([0, 130].contains(dev.terminationStatus), "stopped by the first signal or at once by the second")
            try await eventually("dev's nats-server is gone") { !accepts(natsPort) }
        }
    }
}
