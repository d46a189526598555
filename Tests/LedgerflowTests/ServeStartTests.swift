import Foundation
import LedgerCore
import LedgerDevServices
import LedgerTestSupport
import Testing

extension Integration {
    /// `serve` started before its NATS is up waits for it instead of exiting (issue 16, item 3).
    @Suite struct ServeStartTests {
        /// `--max-runs-in-flight` (and its variable) reach the engine of a real `serve`: its metrics say the limit.
        @Test func serveTakesItsLimitOfRunsInFlightFromTheFlagOrTheEnvironment() async throws {
            let cases: [([String], [String: String], Double)] = [
                ([], [:], 10_000), (["--max-runs-in-flight", "7"], [:], 7),
                ([], ["LEDGERFLOW_MAX_RUNS_IN_FLIGHT": "12"], 12),
            ]
            for (arguments, environment, limit) in cases {
                let data = TemporaryDirectory("serve")
                let serve = try LedgerflowServe(
                    binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path,
                    arguments: arguments, environment: environment)
                defer { serve.kill() }
                try await serve.waitReady()
                let (_, text) = try await serve.http.text("GET", "/metrics")
                #expect(PrometheusText(text).value("ledgerflow_runs_in_flight_limit") == limit, "\(arguments)")
                #expect(PrometheusText(text).value("ledgerflow_run_limit_reached_total") == 0)
            }
        }

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

        /// `serve` runs the read models' writer below its own priority (10 unless told; `--lmdb-writer-nice 0`
        /// keeps the process's), and the read models still follow the log through it.
        @Test func serveRunsTheReadModelsWriterBelowItsOwnPriority() async throws {
            for (arguments, below) in [([String](), 10), (["--lmdb-writer-nice", "0"], 0)] {
                let data = TemporaryDirectory("serve-nice")
                let serve = try LedgerflowServe(
                    binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path,
                    arguments: arguments)
                defer { serve.kill() }
                try await serve.waitReady()
                let (created, answer) = try await serve.http.json(
                    "POST", "/automation/flows", Fixtures.calendarCreateEvent)
                // 409 when an earlier serve on the shared stream registered it: this one's fresh models read it anyway.
                #expect(created == 201 || created == 409, "\(answer.compactJSON)")
                try await eventually("the flow is in this serve's read models, written by its writer") {
                    try await serve.http.json("GET", "/automation/flows/calendar-create-event").0 == 200
                }
                let threads = try ThreadStat.threads(of: serve.process.processIdentifier)
                let main = try #require(threads.first { $0.id == Int(serve.process.processIdentifier) })
                let writers = threads.filter { $0.name == "lmdb-writer" }
                #expect(writers.count == 1, "\(threads.map(\.name))")
                #expect(writers.first?.nice == min(main.nice + below, 19), "\(arguments): \(writers) beside \(main)")
            }
        }
    }
}
