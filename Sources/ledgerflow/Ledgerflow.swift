import ArgumentParser
import CoreMetrics
import Foundation
import LedgerAPI
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerProjections
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

@main
struct Ledgerflow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledgerflow",
        abstract: "An event-sourced automation engine on NATS JetStream and LMDB.",
        subcommands: [
            Dev.self, Serve.self, Replay.self, Projections.self, Publish.self, Flows.self, RunFlow.self, Runs.self,
            DLQ.self, Tail.self, Verify.self, Simulate.self, CalendarSimAlias.self, Tokens.self, Audit.self,
            Schedules.self,
        ])
}

/// Options of commands that talk to a running server.
struct ServerOptions: ParsableArguments {
    @Option(help: "Ledgerflow HTTP API (env LEDGERFLOW_URL).")
    var url: String = ProcessInfo.processInfo.environment["LEDGERFLOW_URL"] ?? "http://127.0.0.1:8080"
    @Option(name: .customLong("token"), help: "Bearer token (env LEDGERFLOW_TOKEN).")
    var tokenOption: String?
    var token: String? { tokenOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_TOKEN"] }
}

/// Takes the data directory's lock for `serve` or `dev` (held until the process ends), or says who holds it and
/// what to do, and exits.
func lockDataDirectory(_ dataDirectory: String, command: String) throws -> DataDirectoryLock {
    do {
        return try DataDirectoryLock.acquire(dataDirectory: dataDirectory, command: command)
    } catch let busy as DataDirectoryLock.Busy {
        print(
            "\(command) cannot start: \(busy). Two processes must not write the same read models: stop that one\(busy.pid.map { " (kill -INT \($0))" } ?? ""), or give this one another --data-dir."
        )
        throw ExitCode(1)
    } catch let error as RuntimeError {
        print("\(command) cannot start: \(error)")
        throw ExitCode(1)
    }
}

func makeLogger(_ label: String = "ledgerflow") -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel =
            ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        return handler
    }
    return Logger(label: label)
}

/// Everything `serve` and `dev` run, in dependency order.
struct Stack {
    let ledger: Ledger
    let store: ReadModelStore
    let projector: Projector
    let engine: Engine
    let tokens: AccessTokens
    /// The OTLP export of spans, when the environment asks for it.
    let spans: SpanExport?

    static func open(
        natsURL: String, connectOptions: NATSConnectOptions, dataDirectory: String, mapSize: Int,
        writerNiceness: Int32, tokens: AccessTokens,
        outbound: OutboundPolicy, worker: WorkerOptions, stream: StreamOptions, secrets: SecretOptions,
        integrations: IntegrationOptions, logger: Logger
    ) async throws -> Stack {
        let ledger = try await Ledger.openWhenReachable(
            url: natsURL, clientName: "ledgerflow-engine", configuration: try stream.configuration(),
            setup: .createOrUpdate, connectOptions: connectOptions, logger: logger)
        let store = try ReadModelStore(
            path: "\(dataDirectory)/lmdb", mapSize: mapSize, writerNiceness: writerNiceness)
        let projector = Projector(ledger: ledger, store: store, logger: logger)
        let spans = try SpanExport.fromEnvironment(logger: logger)
        var configuration = EngineConfiguration()
        configuration.tracer = spans?.tracer
        configuration.outbound = outbound
        configuration.tokens = tokens
        try worker.apply(to: &configuration)
        try secrets.apply(to: &configuration)
        try integrations.apply(to: &configuration)
        configuration.eventSubjects = try stream.eventSubjects()
        let engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: logger)
        ProcessMetrics.bootstrap(engine.metrics.factory)
        return Stack(
            ledger: ledger, store: store, projector: projector, engine: engine, tokens: tokens, spans: spans)
    }

    func services(host: String, port: Int, logger: Logger) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        let dependencies = APIDependencies(ledger: ledger, store: store, engine: engine, tokens: tokens)
        let app = buildApplication(dependencies, host: host, port: port, logger: logger)
        // The span export first: a service group stops its services in reverse order, so the spans the engine ends
        // on its way out are exported before the exporter stops.
        let export = spans.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0.service)] } ?? []
        return export + [
            .init(service: projector), .init(service: engine), .init(service: app),
        ] + [
            .init(
                service: BrokenFlowsCheck(admin: dependencies.admin, logger: logger),
                successTerminationBehavior: .ignore)
        ]
    }
}

/// The process-wide `MetricsSystem`, bootstrapped with the engine's factory, so metrics the libraries make with it
/// land in the engine's registry and on `GET /metrics`. `MetricsSystem.bootstrap` may run once per process.
enum ProcessMetrics {
    static let bootstrapped = Mutex(false)

    static func bootstrap(_ factory: any MetricsFactory) {
        bootstrapped.withLock { done in
            guard !done else { return }
            MetricsSystem.bootstrap(factory)
            done = true
        }
    }
}

/// Registers and activates the example flows that are not there yet.
struct ExampleFlows: Service {
    static let actor = ActorRef(type: "system", id: "ledgerflow-dev")
    let admin: FlowAdmin
    let directory: String
    let logger: Logger

    func run() async throws {
        // Decide against the whole log: wait until the read models have caught up with it.
        let end = try await admin.ledger.lastSequence()
        _ = await admin.store.progress.wait(for: end, timeout: .seconds(60))
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix(".json")
        }.sorted()
        for file in files {
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(file)"))
                let json = try JSONDecoder().decode(JSONValue.self, from: data)
                guard let id = json["id"]?.stringValue else { continue }
                if try admin.store.flow(id) == nil { _ = try await admin.register(json, actor: Self.actor) }
                let record = try await admin.activate(id, actor: Self.actor)
                print(
                    "  flow        \(id) v\(record.current_version) \(record.status.rawValue) (from \(directory)/\(file))"
                )
                fflush(nil)
            } catch {
                logger.warning("example \(file) was not loaded: \(error)")
            }
        }
    }
}

struct Dev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Everything on one machine: nats-server, engine, projectors, HTTP API, simulators, example flows.")

    @Option(help: "Port of the local nats-server.") var natsPort = 4222
    @Option(help: "Port of the HTTP API.") var httpPort = 8080
    @Option(help: "Where nats-server and LMDB keep their data.") var dataDir = "./.ledgerflow"
    @Option(help: "Use this NATS server instead of starting one.") var natsURL: String?
    @Option(
        name: .customLong("admin-token"),
        help: "The admin token to create (env LEDGERFLOW_ADMIN_TOKEN); a fresh one is printed otherwise.")
    var adminTokenOption: String?
    var adminToken: String? { adminTokenOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_ADMIN_TOKEN"] }
    @OptionGroup var tokenOptions: TokenFileOptions
    @Option(help: "Directory of example flows to load.") var examples = "examples/flows"
    @Option(help: "Calendar simulator: delay before each answer, in ms.") var calendarLatencyMs = 50
    @Option(help: "Calendar simulator: probability of a (retryable) failure.") var calendarFailureRate = 0.0
    @OptionGroup var outbound: OutboundOptions
    @OptionGroup var lmdb: LMDBOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var stream: StreamOptions
    @OptionGroup var secrets: SecretOptions
    @OptionGroup var integrations: IntegrationOptions
    @OptionGroup var natsAccess: NATSAccessOptions

    func validate() throws {
        try natsAccess.checkForDev(natsURL: natsURL)
    }

    func run() async throws {
        let logger = makeLogger()
        // Held until the process ends: no other serve, dev or rebuild writes these read models meanwhile.
        _ = try lockDataDirectory(dataDir, command: "ledgerflow dev")
        // Its own nats-server has no authorization: the credentials are for a server given with --nats-url.
        let connectOptions = natsURL == nil ? .none : natsAccess.connectOptions
        var server: LocalNATSServer?
        let url: String
        if let natsURL {
            url = natsURL
        } else {
            do {
                server = try LocalNATSServer(port: natsPort, dataDirectory: "\(dataDir)/nats", logger: logger)
            } catch let error as LocalNATSServer.NotFound {
                print(error.description)
                throw ExitCode(1)
            }
            url = server!.url
        }
        let token = adminToken ?? AccessTokens.generate()
        let tokens = try tokenOptions.tokens(
            admin: [AccessToken(token: token, subject: "admin", role: .admin)], dataDirectory: dataDir)
        let stack = try await Stack.open(
            natsURL: url, connectOptions: connectOptions, dataDirectory: dataDir, mapSize: try lmdb.mapSize(),
            writerNiceness: try lmdb.writerNiceness(), tokens: tokens,
            outbound: try outbound.policy(allowLoopback: true), worker: worker, stream: stream,
            secrets: secrets, integrations: integrations, logger: logger)
        var settings = CalendarSimulator.Settings()
        settings.latency = .milliseconds(calendarLatencyMs)
        settings.failureRate = calendarFailureRate
        let calendar = try await CalendarSimulator.connect(
            url: url, settings: settings, connectOptions: connectOptions, logger: logger)
        let discovery = try await DiscoverySimulator.connect(url: url, connectOptions: connectOptions, logger: logger)
        let notifications = try await NotificationSimulator.connect(
            url: url, connectOptions: connectOptions, logger: logger)
        print(
            """
            Ledgerflow dev is running (Ctrl-C stops all of it)
              NATS        \(Ledger.displayURL(url))\(server.map { " (nats-server \($0.version), data in \($0.dataDirectory))" } ?? "")
              HTTP API    http://127.0.0.1:\(httpPort)
              read models \(dataDir)/lmdb
              simulators  calendar (\(calendarLatencyMs) ms latency), discovery, notifications
              admin token \(token)
              tokens file \(tokens.file ?? "none") (ledgerflow tokens create --role viewer --subject alice --data-dir \(dataDir))

            export LEDGERFLOW_URL=http://127.0.0.1:\(httpPort) LEDGERFLOW_TOKEN=\(token) LEDGERFLOW_NATS_URL=\(Ledger.displayURL(url))
            """)
        fflush(nil)
        let examples = ExampleFlows(
            admin: FlowAdmin(ledger: stack.ledger, store: stack.store), directory: examples, logger: logger)
        var services = stack.services(host: "127.0.0.1", port: httpPort, logger: logger)
        services += [
            .init(service: calendar), .init(service: discovery), .init(service: notifications),
            .init(service: examples, successTerminationBehavior: .ignore),
        ]
        let group = ServiceGroup(configuration: Shutdown.configuration(services: services, logger: logger))
        try await group.run()
        stack.ledger.close()
        server?.stop()
        print("Ledgerflow dev stopped.")
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Engine, projectors and HTTP API against an existing NATS server.")

    @OptionGroup var nats: NATSOptions
    @Option(help: "Address of the HTTP API.") var host = "127.0.0.1"
    @Option(help: "Port of the HTTP API.") var httpPort = 8080
    @Option(help: "Where LMDB keeps the read models.") var dataDir = "./.ledgerflow"
    @Option(name: .customLong("admin-token"), help: "Admin token (env LEDGERFLOW_ADMIN_TOKEN).") var adminTokenOption:
        String?
    var adminToken: String? { adminTokenOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_ADMIN_TOKEN"] }
    @OptionGroup var tokenOptions: TokenFileOptions
    @Flag(help: "Also run the calendar, discovery and notification simulators.") var simulators = false
    @OptionGroup var outbound: OutboundOptions
    @OptionGroup var lmdb: LMDBOptions
    @OptionGroup var worker: WorkerOptions
    @OptionGroup var stream: StreamOptions
    @OptionGroup var secrets: SecretOptions
    @OptionGroup var integrations: IntegrationOptions

    func run() async throws {
        let logger = makeLogger()
        // Held until the process ends: no other serve, dev or rebuild writes these read models meanwhile.
        _ = try lockDataDirectory(dataDir, command: "ledgerflow serve")
        let tokens = try tokenOptions.tokens(
            admin: adminToken.map { [AccessToken(token: $0, subject: "admin", role: .admin)] } ?? [],
            dataDirectory: dataDir)
        if tokens.count == 0 {
            logger.warning(
                "no tokens yet (--admin-token, or ledgerflow tokens create): every API call but /health is refused until one exists",
                metadata: ["ledger.tokens_file": "\(tokens.file ?? "")"])
        }
        let stack = try await Stack.open(
            natsURL: nats.natsURL, connectOptions: nats.connectOptions, dataDirectory: dataDir,
            mapSize: try lmdb.mapSize(), writerNiceness: try lmdb.writerNiceness(), tokens: tokens,
            outbound: try outbound.policy(allowLoopback: false),
            worker: worker, stream: stream, secrets: secrets, integrations: integrations, logger: logger)
        var services = stack.services(host: host, port: httpPort, logger: logger)
        // The simulators stand for other services: each connects on its own.
        if simulators {
            services.append(
                .init(
                    service: try await CalendarSimulator.connect(
                        url: nats.natsURL, connectOptions: nats.connectOptions, logger: logger)))
            services.append(
                .init(
                    service: try await DiscoverySimulator.connect(
                        url: nats.natsURL, connectOptions: nats.connectOptions, logger: logger)))
            services.append(
                .init(
                    service: try await NotificationSimulator.connect(
                        url: nats.natsURL, connectOptions: nats.connectOptions, logger: logger)))
        }
        logger.info(
            "serving on http://\(host):\(httpPort), NATS \(nats.displayURL), read models in \(dataDir)/lmdb")
        let group = ServiceGroup(
            configuration: Shutdown.configuration(services: services, logger: logger))
        try await group.run()
        stack.ledger.close()
    }
}

/// `ledgerflow simulate calendar|discovery|notifications`: stand in for one of the other services, with switches.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Answer as the calendar, discovery or notification service would, or receive webhook deliveries (for demos, tests and benchmarks).",
        subcommands: [CalendarSim.self, DiscoverySim.self, NotificationSim.self, WebhookSim.self])
}

/// The switches every simulator has.
struct SimulatorSwitches: ParsableArguments {
    @Option(help: "Delay before each answer, in ms (0 to 600000).") var latencyMs = 0
    @Option(help: "Probability of a failure answer (0 to 1).") var failureRate = 0.0
    @Flag(help: "Failures are not retryable (the step fails at once instead of retrying).") var permanent = false
    @Flag(help: "Never answer (the steps time out).") var silent = false

    func validate() throws {
        guard (0...600_000).contains(latencyMs) else {
            throw ValidationError("--latency-ms \(latencyMs): give a delay from 0 to 600000 ms")
        }
        guard failureRate.isFinite, (0...1).contains(failureRate) else {
            throw ValidationError("--failure-rate \(failureRate): give a probability from 0 to 1 (e.g. 0.2)")
        }
    }

    var latency: Duration { .milliseconds(latencyMs) }
}

/// Runs one simulator until SIGINT or SIGTERM.
func runSimulator(_ service: some Service, logger: Logger) async throws {
    let group = ServiceGroup(
        configuration: .init(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigint, .sigterm], logger: logger))
    try await group.run()
}

struct CalendarSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calendar",
        abstract: "Answer calendar commands as the calendar service would, honouring idempotency keys.")

    @OptionGroup var nats: NATSOptions
    @OptionGroup var switches: SimulatorSwitches
    @Option(help: "The first N commands of each idempotency key fail.") var failFirst = 0

    func run() async throws {
        try await Self.run(nats: nats, switches: switches, failFirst: failFirst)
    }

    static func run(nats: NATSOptions, switches: SimulatorSwitches, failFirst: Int) async throws {
        let logger = makeLogger()
        var settings = CalendarSimulator.Settings()
        settings.latency = switches.latency
        settings.failureRate = switches.failureRate
        settings.failFirst = failFirst
        settings.permanentFailures = switches.permanent
        settings.silent = switches.silent
        let simulator = try await CalendarSimulator.connect(
            url: nats.natsURL, settings: settings, connectOptions: nats.connectOptions, logger: logger)
        try await runSimulator(simulator, logger: logger)
    }
}

struct DiscoverySim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "discovery", abstract: "Answer discovery.search requests as the search service would.")

    @OptionGroup var nats: NATSOptions
    @OptionGroup var switches: SimulatorSwitches

    func run() async throws {
        let logger = makeLogger()
        var settings = DiscoverySimulator.Settings()
        settings.latency = switches.latency
        settings.failureRate = switches.failureRate
        settings.permanentFailures = switches.permanent
        settings.silent = switches.silent
        let simulator = try await DiscoverySimulator.connect(
            url: nats.natsURL, settings: settings, connectOptions: nats.connectOptions, logger: logger)
        try await runSimulator(simulator, logger: logger)
    }
}

struct NotificationSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifications",
        abstract: "Take notification requests and answer Notification.Sent|Failed as the notification service would.")

    @OptionGroup var nats: NATSOptions
    @OptionGroup var switches: SimulatorSwitches

    func run() async throws {
        let logger = makeLogger()
        var settings = NotificationSimulator.Settings()
        settings.latency = switches.latency
        settings.failureRate = switches.failureRate
        settings.silent = switches.silent
        settings.permanentFailures = switches.permanent
        let simulator = try await NotificationSimulator.connect(
            url: nats.natsURL, settings: settings, connectOptions: nats.connectOptions, logger: logger)
        try await runSimulator(simulator, logger: logger)
    }
}

/// The former name of `simulate calendar`, kept for scripts that use it.
struct CalendarSimAlias: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calendar-simulator", abstract: "Same as simulate calendar.", shouldDisplay: false)

    @OptionGroup var nats: NATSOptions
    @OptionGroup var switches: SimulatorSwitches
    @Option(help: "The first N commands of each idempotency key fail.") var failFirst = 0

    func run() async throws {
        try await CalendarSim.run(nats: nats, switches: switches, failFirst: failFirst)
    }
}
