import Foundation
import LedgerCore
import LedgerTestSupport
import Testing

@testable import LedgerEngine

extension Integration {
    /// `serve` holds its data directory for as long as it runs; `projections rebuild` never swaps the read models
    /// under it, and a killed serve leaves nothing behind that blocks (issue 16).
    @Suite struct DataDirectoryLockTests {
        /// The identity of the live models' data file: a swap replaces it.
        func fileIdentity(_ path: String) throws -> UInt64 {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            return try #require(attributes[.systemFileNumber] as? UInt64)
        }

        @Test func rebuildRefusesToSwapTheModelsUnderARunningServeAndRunsOnceItIsKilled() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let data = TemporaryDirectory("serve-lock")
            let serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path)
            defer { serve.kill() }
            try await serve.waitReady()
            let models = "\(data.path)/lmdb/data.mdb"
            let before = try fileIdentity(models)

            let (refused, output) = try ledgerflow([
                "projections", "rebuild", "--data-dir", data.path, "--nats-url", TestServer.url,
            ])
            #expect(refused != 0, "\(output)")
            #expect(output.contains("pid \(serve.process.processIdentifier)"), "names serve's pid: \(output)")
            #expect(output.contains("ledgerflow serve"), "\(output)")
            #expect(output.contains("Stop it first"), "says what to do: \(output)")
            #expect(output.contains("--data-dir"), "\(output)")
            #expect(try fileIdentity(models) == before, "the live models were not swapped")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: data.path).filter {
                $0.hasPrefix("lmdb.")
            }
            #expect(leftovers.isEmpty, "no scratch directory left behind: \(leftovers)")
            #expect(serve.process.isRunning)

            // --verify swaps nothing: it runs alongside serve.
            let (verified, verifyOutput) = try ledgerflow([
                "projections", "rebuild", "--verify", "--data-dir", data.path, "--nats-url", TestServer.url,
            ])
            #expect(verified == 0, "\(verifyOutput)")

            // A second serve on the same directory is refused too, and says by whom.
            let second = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path)
            defer { second.kill() }
            let deadline = ContinuousClock.now + .seconds(30)
            while second.process.isRunning, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(!second.process.isRunning, "the second serve exits")
            if !second.process.isRunning { #expect(second.process.terminationStatus != 0) }
            let log = try String(contentsOfFile: serve.logFile, encoding: .utf8)
            #expect(log.contains("ledgerflow serve cannot start"), "\(log)")
            #expect(log.contains("pid \(serve.process.processIdentifier)"), "\(log)")

            // Killed without a chance to clean up, serve leaves no lock that blocks: the kernel released it.
            serve.kill()
            let (rebuilt, rebuildOutput) = try ledgerflow([
                "projections", "rebuild", "--data-dir", data.path, "--nats-url", TestServer.url,
            ])
            #expect(rebuilt == 0, "\(rebuildOutput)")
            #expect(rebuildOutput.contains("are rebuilt"), "\(rebuildOutput)")
            #expect(try fileIdentity(models) != before, "the models were swapped for the rebuilt ones")
        }
    }
}
