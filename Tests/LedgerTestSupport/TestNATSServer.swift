import Foundation
public import LedgerDevServices
public import LedgerEngine
import LedgerNATS
public import Logging
public import Testing

/// One nats-server per test process, on a free loopback port, in a temporary directory. It dies with the process
/// (see LocalNATSServer's lifeline), so no test can leave one behind. Every test that uses it carries the
/// `.natsServer` trait, so only one of them runs at a time, whatever test target it is in.
public enum TestServer {
    public static let shared: LocalNATSServer = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerflow-tests-\(getpid())").path
        do {
            return try LocalNATSServer(dataDirectory: dir)
        } catch {
            fatalError("the integration tests need nats-server (run tools/setup): \(error)")
        }
    }()

    public static var url: String { shared.url }
}

/// Runs each test of a suite alone among every test of the process that carries it: the tests share one
/// nats-server and its stream, and SwiftPM links all test targets into one process, so a `.serialized` suite per
/// target would not keep two targets' tests apart.
public struct NATSServerTrait: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // A suite's own scope would hold the lock while its tests wait for it.
        guard testCase != nil else { return try await function() }
        try await NATSServerLock.shared.run(test.name, function)
    }
}

extension Trait where Self == NATSServerTrait {
    /// The test uses the shared nats-server: it runs alone among all such tests of the process.
    public static var natsServer: Self { NATSServerTrait() }
}

/// The process-wide turn of the tests that use the shared nats-server: first come, first served.
actor NATSServerLock {
    static let shared = NATSServerLock()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func run(_ name: String, _ body: @Sendable () async throws -> Void) async throws {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
        defer { handOver() }
        if let log = ProcessInfo.processInfo.environment["LEDGERFLOW_TEST_TURNS"] { Self.note(log, "start \(name)") }
        try await body()
        if let log = ProcessInfo.processInfo.environment["LEDGERFLOW_TEST_TURNS"] { Self.note(log, "end \(name)") }
    }

    private func handOver() {
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }

    /// Appends a timestamped line to `file` (set LEDGERFLOW_TEST_TURNS to check that no two turns overlap).
    static func note(_ file: String, _ text: String) {
        let line = "\(Date().timeIntervalSince1970) \(text)\n"
        if let handle = FileHandle(forWritingAtPath: file) {
            handle.seekToEndOfFile()
            handle.write(Data(line.utf8))
            try? handle.close()
        } else {
            try? line.write(toFile: file, atomically: false, encoding: .utf8)
        }
    }
}

public let testLogger: Logger = {
    var logger = Logger(label: "ledgerflow.tests")
    logger.logLevel =
        ProcessInfo.processInfo.environment["LEDGERFLOW_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    return logger
}()

/// A temporary directory removed when the last reference to it goes.
public final class TemporaryDirectory: Sendable {
    public let path: String
    public init(_ name: String = "lmdb") {
        path =
            FileManager.default.temporaryDirectory.appendingPathComponent("ledgerflow-\(name)-\(UUID().uuidString)")
            .path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Opens the ledger at `url` on an empty stream (deleted as an operator would, then created by the ledger).
public func freshLedger(
    url: String, clientName: String = "ledgerflow-tests", configuration: LedgerConfiguration = LedgerConfiguration(),
    logger: Logger
) async throws -> Ledger {
    let connection = try await NATSConnection.connect(url: url, name: "\(clientName)-cleanup", logger: logger)
    defer { connection.close() }
    do {
        try await JetStreamAPI(connection: connection).deleteStream(LedgerConfiguration().streamName)
    } catch let error as NATSError where error.jetStreamError == .streamNotFound {
    }
    return try await Ledger.open(
        url: url, clientName: clientName, configuration: configuration, setup: .createOrUpdate, logger: logger)
}

/// Opens the ledger on the shared server with an empty stream.
public func freshLedger(configuration: LedgerConfiguration = LedgerConfiguration()) async throws -> Ledger {
    await TestStack.stopAll()
    return try await freshLedger(url: TestServer.url, configuration: configuration, logger: testLogger)
}

/// Polls `condition` until it holds or `timeout` passes; every wait in the tests has a deadline. The condition is
/// asked once more after the deadline has passed, so a waiter the machine did not schedule until then (a loaded CI
/// host) still sees what happened meanwhile.
public func eventually(
    _ what: String, timeout: Duration = .seconds(15), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        let late = ContinuousClock.now >= deadline
        if try await condition() { return }
        if late { break }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out after \(timeout) waiting for: \(what)", sourceLocation: sourceLocation)
    throw RuntimeError("timed out waiting for: \(what)")
}
