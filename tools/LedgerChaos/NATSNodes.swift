import Foundation
import LedgerDevServices
import LedgerNATS
import Logging
import Synchronization

/// The nats-server the harness runs: one node, or a 3-node JetStream cluster on loopback. Each node has its own
/// store directory and fixed ports for the whole run, so a node killed and started again comes back with its log.
final class NATSNodes: @unchecked Sendable {
    final class Node: @unchecked Sendable {
        let name: String
        let clientPort: Int
        let clusterPort: Int?
        let directory: String
        let config: String
        let child = Mutex<Child?>(nil)
        let paused = Atomic<Bool>(false)

        init(name: String, clientPort: Int, clusterPort: Int?, directory: String, config: String) {
            self.name = name
            self.clientPort = clientPort
            self.clusterPort = clusterPort
            self.directory = directory
            self.config = config
        }

        var isRunning: Bool { child.withLock { $0?.isRunning ?? false } }
    }

    let binary: String
    let nodes: [Node]
    let cluster: Bool

    /// Every node's client URL, comma-separated: what the workers and the harness connect to.
    var url: String { nodes.map { "nats://127.0.0.1:\($0.clientPort)" }.joined(separator: ",") }

    init(binary: String, cluster: Bool, directory: String) throws {
        self.binary = binary
        self.cluster = cluster
        let count = cluster ? 3 : 1
        let clientPorts = (0..<count).map { _ in LocalNATSServer.freePort() }
        let clusterPorts = cluster ? (0..<count).map { _ in LocalNATSServer.freePort() } : []
        var nodes: [Node] = []
        for i in 0..<count {
            let name = "n\(i + 1)"
            let dir = "\(directory)/nats-\(name)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            // Default fsync (sync_interval 2 minutes): the harness kills processes, never the machine, and a
            // process crash loses nothing the OS holds (see README, "Running on a cluster").
            var text = """
                server_name: "\(name)"
                listen: "127.0.0.1:\(clientPorts[i])"
                jetstream { store_dir: "\(dir)" }

                """
            if cluster {
                let routes = clusterPorts.map { "\"nats-route://127.0.0.1:\($0)\"" }.joined(separator: ", ")
                text += """
                    cluster {
                      name: "ledgerflow-chaos"
                      listen: "127.0.0.1:\(clusterPorts[i])"
                      routes: [\(routes)]
                    }

                    """
            }
            let config = "\(dir)/nats.conf"
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            nodes.append(
                Node(
                    name: name, clientPort: clientPorts[i], clusterPort: cluster ? clusterPorts[i] : nil,
                    directory: dir, config: config))
        }
        self.nodes = nodes
    }

    /// Starts every node and waits until JetStream answers.
    func startAll(logger: Logger) async throws {
        for node in nodes { try start(node) }
        for node in nodes { try await waitListening(node) }
        try await waitJetStream(logger: logger)
    }

    /// Starts a node (again) and waits until it accepts connections.
    func start(_ node: Node) throws {
        let child = try Child(
            name: "nats-\(node.name)", executable: binary, arguments: ["-c", node.config],
            logFile: "\(node.directory)/nats-server.log")
        node.child.withLock { $0 = child }
        node.paused.store(false, ordering: .relaxed)
    }

    func waitListening(_ node: Node, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let fd = LocalNATSServer.connectLoopback(port: node.clientPort)
            if fd >= 0 {
                close(fd)
                return
            }
            guard node.isRunning else {
                throw ChaosError("nats-server \(node.name) exited at start; see \(node.directory)/nats-server.log")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ChaosError("nats-server \(node.name) did not listen within \(timeout)")
    }

    /// Waits until JetStream answers its API (on a cluster: a meta leader was elected).
    func waitJetStream(logger: Logger, timeout: Duration = .seconds(60)) async throws {
        let connection = try await NATSConnection.connect(url: url, name: "chaos-probe", logger: logger)
        defer { connection.close() }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let reply = try? await connection.request(
                subject: "$JS.API.INFO", payload: [], timeout: .seconds(2)),
                let text = String(bytes: reply.payload, encoding: .utf8), !text.contains("\"error\"")
            {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ChaosError("JetStream did not answer within \(timeout)")
    }

    /// Kills a node at once (SIGKILL) and forgets it.
    func kill(_ node: Node) {
        let child = node.child.withLock { $0.take() }
        child?.kill()
    }

    /// Stops a node cleanly (SIGTERM).
    func terminate(_ node: Node) {
        let child = node.child.withLock { $0.take() }
        child?.terminate()
    }

    func pause(_ node: Node) {
        node.child.withLock { $0?.signal(SIGSTOP) }
        node.paused.store(true, ordering: .relaxed)
    }

    func resume(_ node: Node) {
        node.child.withLock { $0?.signal(SIGCONT) }
        node.paused.store(false, ordering: .relaxed)
    }

    /// Every node running and none paused (after the chaos, before the checks).
    func ensureAllUp(logger: Logger) async throws {
        for node in nodes {
            if node.paused.load(ordering: .relaxed) { resume(node) }
            if !node.isRunning { try start(node) }
        }
        for node in nodes { try await waitListening(node) }
        try await waitJetStream(logger: logger)
    }

    func stopAll() {
        for node in nodes { terminate(node) }
    }
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
