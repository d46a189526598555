public import Foundation
import LedgerCore
import LedgerDevServices
import LedgerEngine

/// `ledgerflow serve` as a child process of a test or a benchmark, with its own data directory and admin token.
/// It is started again on the same port and data directory to play a restart.
public final class LedgerflowServe: @unchecked Sendable {
    public static let token = "serve-admin-token"
    public let process = Process()
    public let port: Int
    public let logFile: String
    /// A client of its API, with its admin token.
    public let http: TestHTTPClient

    /// Starts `binary serve` against `natsURL` on `port` (a free one unless given), its log appended to
    /// `dataDirectory/serve.log`. `LOG_LEVEL` is `logLevel` (env `LEDGERFLOW_CHILD_LOG` overrides it).
    /// `arguments` are added to its command line and `environment` to its environment (credentials, TLS).
    public init(
        binary: String, natsURL: String, port: Int? = nil, dataDirectory: String, logLevel: String = "warning",
        arguments extraArguments: [String] = [], environment extraEnvironment: [String: String] = [:]
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw RuntimeError(
                "\(binary) is missing: build the ledgerflow executable first (swift build --build-tests)")
        }
        self.port = port ?? LocalNATSServer.freePort()
        http = TestHTTPClient(port: self.port, token: Self.token, timeout: 30)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        logFile = "\(dataDirectory)/serve.log"
        if !FileManager.default.fileExists(atPath: logFile) {
            _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments =
            [
                "serve", "--nats-url", natsURL, "--http-port", String(self.port), "--data-dir", dataDirectory,
                "--admin-token", Self.token,
            ] + extraArguments
        var environment = ProcessInfo.processInfo.environment.merging(extraEnvironment) { $1 }
        environment["LOG_LEVEL"] = environment["LEDGERFLOW_CHILD_LOG"] ?? logLevel
        process.environment = environment
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    deinit { kill() }

    /// Kills it at once (SIGKILL), as a crash would: no clean stop, timers and memory lost.
    public func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Stops it as Ctrl-C would (SIGINT), then SIGKILL if it has not stopped after 5 s.
    public func stop() {
        guard process.isRunning else { return }
        process.interrupt()
        var waited = 0
        while process.isRunning, waited < 250 {
            usleep(20_000)
            waited += 1
        }
        kill()
        process.waitUntilExit()
    }

    /// Waits until the API answers and the engine has picked up the runs in flight (at most `timeout`).
    public func waitReady(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw RuntimeError("ledgerflow serve exited; see \(logFile)") }
            if let (_, health) = try? await http.json("GET", "/health"), health["engine"]?["ready"] == true { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RuntimeError("ledgerflow serve was not ready within \(timeout); see \(logFile)")
    }

    /// Waits until the API answers `GET /ping` (the engine may still be catching up).
    public func waitAnswering(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw RuntimeError("ledgerflow serve exited; see \(logFile)") }
            if await http.status("/ping") == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RuntimeError("ledgerflow serve did not answer within \(timeout); see \(logFile)")
    }

    /// Waits until the read models have applied the whole log.
    public func waitCaughtUp(timeout: Duration = .seconds(120)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let (_, health) = try? await http.json("GET", "/health"), health[path: "projection.lag"] == 0 { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw RuntimeError("the read models did not catch up within \(timeout); see \(logFile)")
    }
}

/// Runs the built `ledgerflow` executable, as a person would.
public func ledgerflow(
    _ arguments: [String], environment extraEnvironment: [String: String] = [:]
) throws -> (status: Int32, output: String) {
    let binary = Fixtures.ledgerflowBinary
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        throw RuntimeError("build the ledgerflow executable first (swift build --build-tests)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment.merging(extraEnvironment) { $1 }
    environment["LOG_LEVEL"] = "warning"
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
