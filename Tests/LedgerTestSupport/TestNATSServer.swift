import Foundation
import LedgerCore
import LedgerEngine
import LedgerNATS
import Logging
import Testing

/// Every integration test runs inside this suite, one at a time: they share one nats-server and its stream.
@Suite(.serialized, .timeLimit(.minutes(10)))
enum Integration {}

/// One nats-server per test process, on a free loopback port, in a temporary directory. It dies with the process
/// (see LocalNATSServer's lifeline), so no test can leave one behind.
enum TestServer {
    static let shared: LocalNATSServer = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerflow-tests-\(getpid())").path
        do {
            return try LocalNATSServer(dataDirectory: dir)
        } catch {
            fatalError("the integration tests need nats-server (run tools/setup): \(error)")
        }
    }()
}

let testLogger: Logger = {
    var logger = Logger(label: "ledgerflow.tests")
    logger.logLevel = ProcessInfo.processInfo.environment["LEDGERFLOW_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    return logger
}()

/// A temporary directory removed when the test ends.
final class TemporaryDirectory {
    let path: String
    init(_ name: String = "lmdb") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerflow-\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Opens the ledger on the shared server with an empty stream.
func freshLedger() async throws -> Ledger {
    await TestStack.stopAll()
    let connection = try await NATSConnection.connect(url: TestServer.shared.url, name: "test-cleanup", logger: testLogger)
    let api = JetStreamAPI(connection: connection)
    do {
        try await api.deleteStream(LedgerConfiguration().streamName)
    } catch let error as NATSError where error.jetStreamError == .streamNotFound {
    }
    connection.close()
    return try await Ledger.open(url: TestServer.shared.url, setup: .createOrUpdate, logger: testLogger)
}

/// Polls `condition` until it holds or `timeout` passes; every wait in the tests has a deadline.
func eventually(
    _ what: String, timeout: Duration = .seconds(15), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out after \(timeout) waiting for: \(what)", sourceLocation: sourceLocation)
    throw RuntimeError("timed out waiting for: \(what)")
}
