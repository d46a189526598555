// ledgerflow-chaos: workers killed, nats-server restarted and paused under load, then nothing lost, nothing
// doubled and every read model equal to the log (see tools/chaos and README, "Chaos").
import ChaosAudit
import Foundation
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerTestSupport
import Logging
import Synchronization

struct ChaosOptions {
    var workers = 2
    var duration: Duration = .seconds(480)
    var kills = 40
    var natsRestarts = 5
    var pauses = 3
    var cluster = false
    var quick = false
    var seed = UInt64.random(in: 1...999_999)
    var ledgerflow = ".build/debug/ledgerflow"
    var directory: String?
    var keep = false
    /// Triggers per second, over all lanes.
    var rate = 8.0

    static let usage = """
        usage: ledgerflow-chaos [--workers N] [--duration SECONDS] [--kills N] [--nats-restarts N] [--pauses N]
                                [--cluster] [--quick] [--seed N] [--rate PER_SECOND] [--ledgerflow PATH] [--dir DIR] [--keep]
        """

    init(_ arguments: [String]) throws {
        var explicit: Set<String> = []
        var i = 0
        func value() throws -> String {
            i += 1
            guard i < arguments.count else { throw ChaosError("\(arguments[i - 1]) needs a value\n\(Self.usage)") }
            return arguments[i]
        }
        func number(_ text: String, _ name: String) throws -> Int {
            guard let n = Int(text), n >= 0 else { throw ChaosError("\(name): \(text) is not a whole number") }
            return n
        }
        while i < arguments.count {
            let name = arguments[i]
            explicit.insert(name)
            switch name {
            case "--workers": workers = try number(try value(), name)
            case "--duration": duration = .seconds(try number(try value(), name))
            case "--kills": kills = try number(try value(), name)
            case "--nats-restarts": natsRestarts = try number(try value(), name)
            case "--pauses": pauses = try number(try value(), name)
            case "--cluster": cluster = true
            case "--quick": quick = true
            case "--seed": seed = UInt64(try number(try value(), name))
            case "--rate":
                guard let r = Double(try value()), r > 0, r <= 1000 else { throw ChaosError("--rate: 0 to 1000") }
                rate = r
            case "--ledgerflow": ledgerflow = try value()
            case "--dir": directory = try value()
            case "--keep": keep = true
            case "--help", "-h":
                print(Self.usage)
                exit(0)
            default: throw ChaosError("unknown option \(name)\n\(Self.usage)")
            }
            i += 1
        }
        if quick {
            if !explicit.contains("--duration") { duration = .seconds(75) }
            if !explicit.contains("--kills") { kills = 8 }
            if !explicit.contains("--nats-restarts") { natsRestarts = 2 }
            if !explicit.contains("--pauses") { pauses = 1 }
            if !explicit.contains("--rate") { rate = 5 }
        }
        guard workers >= 2 else { throw ChaosError("--workers: at least 2 (the point is several workers)") }
    }
}

func say(_ text: String) { FileHandle.standardError.write(Data("chaos: \(text)\n".utf8)) }

func runChaos(_ options: ChaosOptions, logger: Logger) async throws -> Int32 {
    guard let binary = LocalNATSServer.locateBinary() else {
        throw ChaosError("nats-server was not found: run tools/setup, or set LEDGERFLOW_NATS_SERVER")
    }
    let ledgerflow = URL(fileURLWithPath: options.ledgerflow).standardizedFileURL.path
    guard FileManager.default.isExecutableFile(atPath: ledgerflow) else {
        throw ChaosError("\(ledgerflow) is missing: build it first (swift build --product ledgerflow)")
    }
    let directory =
        options.directory
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("ledgerflow-chaos-\(getpid())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    say(
        "seed \(options.seed), \(options.workers) workers, \(options.cluster ? "3-node cluster (R3)" : "one nats-server"), load for \(options.duration), \(options.kills) kills, \(options.natsRestarts) nats restarts, \(options.pauses) pauses; files in \(directory)"
    )

    let nodes = try NATSNodes(binary: binary, cluster: options.cluster, directory: directory)
    try await nodes.startAll(logger: logger)
    let target = CountingTarget(seed: options.seed ^ 0x7A9)
    try await target.start(logger: logger)
    var calendarSettings = CalendarSimulator.Settings()
    calendarSettings.latency = .milliseconds(20)
    calendarSettings.failureRate = 0.15
    let calendar = try await CalendarSimulator.connect(url: nodes.url, settings: calendarSettings, logger: logger)
    let calendarTask = Task { try await calendar.run() }
    defer { calendarTask.cancel() }

    let settings = ChaosSettings(
        ledgerflow: ledgerflow, natsURL: nodes.url, targetPort: target.port, leaseTTL: "2s",
        replicas: options.cluster ? 3 : 1)
    let workers = try (1...options.workers).map { try Worker(id: "w\($0)", directory: "\(directory)/worker-\($0)") }
    for worker in workers { try worker.start(settings: settings) }
    for worker in workers {
        let deadline = ContinuousClock.now + .seconds(120)
        while await worker.health()?.ready != true {
            guard ContinuousClock.now < deadline, worker.isRunning else {
                throw ChaosError("worker \(worker.id) did not become ready; see \(worker.directory)/serve.log")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
    try await ChaosFlows.register(through: workers[0], targetURL: target.url)
    let ledger = try await Ledger.open(url: nodes.url, clientName: "ledgerflow-chaos", logger: logger)
    defer { ledger.close() }
    // Every worker sees both flows active before the load starts.
    for worker in workers {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let (status, flow) =
                (try? await worker.http.json("GET", "/automation/flows/\(ChaosFlows.manual)")) ?? (0, .null)
            if status == 200, flow["status"]?.stringValue == "active" { break }
            guard ContinuousClock.now < deadline else { throw ChaosError("worker \(worker.id) never saw the flows") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
    say("everything is up; load and faults for \(options.duration)")

    let load = Load(ledger: ledger, workers: workers, seed: options.seed, logger: logger)
    let chaos = Chaos(nodes: nodes, workers: workers, settings: settings, seed: options.seed, logger: logger)
    let supervisor = Task { await chaos.supervise() }
    let end = ContinuousClock.now + options.duration
    async let loadDone: Void = load.run(until: end, rate: options.rate, lanes: 4)
    async let killsDone: Void = chaos.killWorkers(count: options.kills, over: options.duration)
    async let natsDone: Void = chaos.disruptNATS(
        restarts: options.natsRestarts, pauses: options.pauses, over: options.duration)
    _ = await (loadDone, killsDone, natsDone)
    say("load and faults over (\(load.sent.load(ordering: .relaxed)) triggers sent); waiting for quiet")

    // Everything up again, then quiet.
    try await nodes.ensureAllUp(logger: logger)
    for worker in workers where !worker.isRunning {
        if worker.reapIfExited() { say("worker \(worker.id) had ended by itself") }
        try worker.start(settings: settings)
    }
    let check = Check(ledger: ledger, workers: workers, settings: settings, logger: logger)
    let account = try await check.waitQuiet(timeout: options.quick ? .seconds(150) : .seconds(300))
    supervisor.cancel()

    var observed = ChaosObservations()
    observed.triggersSent = load.sent.load(ordering: .relaxed)
    observed.accepted = load.accepted
    observed.runs = account.facts
    observed.effects = target.received().map { EffectCalls(service: "http", idempotencyKey: $0.key, calls: $0.value) }
    observed.effects += calendar.received().map { key, received in
        EffectCalls(
            service: "calendar", idempotencyKey: key, calls: received.commands.values.reduce(0, +),
            commandIDs: received.commands)
    }
    observed.modelMismatches = await check.modelMismatches(account)
    observed.kills = chaos.kills.load(ordering: .relaxed)
    observed.natsRestarts = chaos.natsRestarts.load(ordering: .relaxed)
    observed.pauses = chaos.pauses.load(ordering: .relaxed)
    let verdict = auditChaos(observed)

    for line in load.refused.prefix(10) { say("not accepted: \(line)") }
    let selfExits = workers.map { $0.exits.load(ordering: .relaxed) }.reduce(0, +)
    if selfExits > 0 { say("workers ended by themselves \(selfExits) time(s) (restarted; see their serve.log)") }
    for line in verdict.problems { say(line) }
    print(verdict.summaryLine)
    fflush(nil)

    for worker in workers { worker.stop() }
    calendarTask.cancel()
    await target.stop()
    nodes.stopAll()
    if verdict.passed, !options.keep, options.directory == nil {
        try? FileManager.default.removeItem(atPath: directory)
    } else {
        say("logs and data kept in \(directory)")
    }
    return verdict.passed ? 0 : 1
}

Children.installSignalHandlers()
var logger = Logger(label: "ledgerflow.chaos")
logger.logLevel = .error
let status: Int32
do {
    let options = try ChaosOptions(Array(CommandLine.arguments.dropFirst()))
    status = try await runChaos(options, logger: logger)
} catch {
    say("failed: \(error)")
    status = 2
}
Children.killAll()
exit(status)
