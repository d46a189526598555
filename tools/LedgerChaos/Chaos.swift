import Foundation
import Logging
import Synchronization

/// The faults: workers SIGKILLed at random moments (each started again after a moment), nats-server (or one
/// cluster node at a time) restarted, and paused with SIGSTOP for longer than the publish timeout.
final class Chaos: Sendable {
    let nodes: NATSNodes
    let workers: [Worker]
    let settings: ChaosSettings
    let random: SeededRandom
    let logger: Logger
    let kills = Atomic<Int>(0)
    let natsRestarts = Atomic<Int>(0)
    let pauses = Atomic<Int>(0)
    /// The publish acknowledgement timeout of the engine (JetStreamPublisher): a pause must outlast it.
    static let publishTimeout: Duration = .seconds(10)

    init(nodes: NATSNodes, workers: [Worker], settings: ChaosSettings, seed: UInt64, logger: Logger) {
        self.nodes = nodes
        self.workers = workers
        self.settings = settings
        self.random = SeededRandom(seed: seed ^ 0xC4A0_5)
        self.logger = logger
    }

    func say(_ text: String) { FileHandle.standardError.write(Data("chaos: \(text)\n".utf8)) }

    /// `count` kills spread at random over `duration`; each killed worker is started again after 0.2 to 3 s.
    func killWorkers(count: Int, over duration: Duration) async {
        guard count > 0 else { return }
        let mean = duration / count
        await withTaskGroup(of: Void.self) { restarts in
            for _ in 0..<count {
                try? await Task.sleep(for: random.duration(mean / 4, mean * 7 / 4))
                if Task.isCancelled { break }
                let candidates = workers.filter { $0.isRunning }
                guard !candidates.isEmpty else { continue }
                let worker = candidates[random.int(0...(candidates.count - 1))]
                worker.kill()
                let n = kills.add(1, ordering: .relaxed).newValue
                say("kill \(n): SIGKILL worker \(worker.id)")
                let downFor = random.duration(.milliseconds(200), .seconds(3))
                restarts.addTask {
                    try? await Task.sleep(for: downFor)
                    self.restart(worker)
                }
            }
        }
    }

    func restart(_ worker: Worker) {
        do {
            try worker.start(settings: settings)
        } catch {
            say("worker \(worker.id) could not be started again: \(error)")
        }
    }

    /// Restarts workers that ended by themselves (not killed by the harness), until cancelled.
    func supervise() async {
        while !Task.isCancelled {
            for worker in workers where !worker.down.load(ordering: .relaxed) && worker.reapIfExited() {
                say("worker \(worker.id) ended by itself (see \(worker.directory)/serve.log); starting it again")
                try? await Task.sleep(for: .milliseconds(500))
                restart(worker)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }

    /// `restarts` restarts and `pauses` pauses of nats-server (one node at a time on a cluster), in a seeded order,
    /// spread over `duration` after its first tenth.
    func disruptNATS(restarts: Int, pauses: Int, over duration: Duration) async {
        var plan = Array(repeating: true, count: restarts) + Array(repeating: false, count: pauses)
        for i in stride(from: plan.count - 1, to: 0, by: -1) { plan.swapAt(i, random.int(0...i)) }
        guard !plan.isEmpty else { return }
        try? await Task.sleep(for: duration / 10)
        let slot = duration * 0.85 / plan.count
        for (index, isRestart) in plan.enumerated() {
            let began = ContinuousClock.now
            let node = nodes.nodes[index % nodes.nodes.count]
            if isRestart {
                await restartNode(node, graceful: index % 2 == 1)
            } else {
                await pauseNode(node)
            }
            let spent = ContinuousClock.now - began
            if spent < slot { try? await Task.sleep(for: random.duration((slot - spent) / 2, slot - spent)) }
        }
    }

    func restartNode(_ node: NATSNodes.Node, graceful: Bool) async {
        let n = natsRestarts.add(1, ordering: .relaxed).newValue
        say("nats restart \(n): \(graceful ? "SIGTERM" : "SIGKILL") nats-server \(node.name)")
        if graceful { nodes.terminate(node) } else { nodes.kill(node) }
        try? await Task.sleep(for: random.duration(.seconds(1), .seconds(5)))
        do {
            try nodes.start(node)
            try await nodes.waitListening(node)
        } catch {
            say("nats-server \(node.name) did not come back: \(error); trying once more")
            try? nodes.start(node)
        }
    }

    func pauseNode(_ node: NATSNodes.Node) async {
        let n = pauses.add(1, ordering: .relaxed).newValue
        let pause = random.duration(Self.publishTimeout + .seconds(2), Self.publishTimeout + .seconds(6))
        say("pause \(n): SIGSTOP nats-server \(node.name) for \(pause)")
        nodes.pause(node)
        try? await Task.sleep(for: pause)
        nodes.resume(node)
    }
}
