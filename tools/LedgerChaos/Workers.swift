import Foundation
import LedgerCore
import LedgerDevServices
import LedgerTestSupport
import Synchronization

/// One `ledgerflow serve` worker: its slot keeps its id, port and data directory across kills, as a worker
/// restarted by a supervisor would.
final class Worker: @unchecked Sendable {
    static let token = "chaos-admin-token"
    let id: String
    let port: Int
    let directory: String
    let http: TestHTTPClient
    private let child = Mutex<Child?>(nil)
    /// Deliberately down (killed by the harness and not started again yet): the supervisor leaves it alone.
    let down = Atomic<Bool>(false)
    /// Times it ended without being killed by the harness.
    let exits = Atomic<Int>(0)
    let starts = Atomic<Int>(0)

    init(id: String, directory: String) throws {
        self.id = id
        self.port = LocalNATSServer.freePort()
        self.directory = directory
        http = TestHTTPClient(port: port, token: Self.token, timeout: 5)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    var isRunning: Bool { child.withLock { $0?.isRunning ?? false } }

    func start(settings: ChaosSettings) throws {
        var arguments = [
            "serve", "--nats-url", settings.natsURL, "--http-port", String(port), "--data-dir", directory,
            "--admin-token", Self.token, "--worker-id", id, "--lease-ttl", settings.leaseTTL,
            "--http-allow", "127.0.0.1:\(settings.targetPort)", "--lmdb-map-size", "256MiB",
        ]
        if settings.replicas > 1 { arguments += ["--replicas", String(settings.replicas)] }
        var environment = ProcessInfo.processInfo.environment
        environment["LOG_LEVEL"] = environment["LEDGERFLOW_CHAOS_LOG"] ?? "warning"
        let started = try Child(
            name: "serve-\(id)", executable: settings.ledgerflow, arguments: arguments, environment: environment,
            logFile: "\(directory)/serve.log")
        child.withLock { $0 = started }
        starts.add(1, ordering: .relaxed)
        down.store(false, ordering: .relaxed)
    }

    /// SIGKILL, as a crash would.
    func kill() {
        down.store(true, ordering: .relaxed)
        let killed = child.withLock { $0.take() }
        killed?.kill()
    }

    /// Reaps a worker that ended by itself; true when it did.
    func reapIfExited() -> Bool {
        let ended = child.withLock { child -> Child? in
            guard let current = child, !current.isRunning else { return nil }
            child = nil
            return current
        }
        guard let ended else { return false }
        ended.kill()
        exits.add(1, ordering: .relaxed)
        return true
    }

    func stop() {
        down.store(true, ordering: .relaxed)
        let stopped = child.withLock { $0.take() }
        stopped?.terminate()
    }

    /// The engine's readiness and the read models' lag, from `/health` (nil when it does not answer).
    func health() async -> (ready: Bool, lag: Int?)? {
        guard let (_, body) = try? await http.json("GET", "/health") else { return nil }
        guard case .object = body else { return nil }
        let ready = body["engine"]?["ready"] == true
        let lag = body[path: "projection.lag"]?.numberValue.flatMap { Int(exactly: $0) }
        return (ready, lag)
    }
}

/// What every part of the harness needs to know about the set-up.
struct ChaosSettings: Sendable {
    var ledgerflow: String
    var natsURL: String
    var targetPort: Int
    var leaseTTL: String
    var replicas: Int
}
