import Foundation
import LedgerAPI
public import LedgerCore
public import LedgerDevServices
public import LedgerEngine
public import LedgerNATS
import Logging
public import ServiceLifecycle
import Synchronization
import Testing

/// Runs `body` with a fresh stack and stops the stack afterwards, whatever happens in `body` (an error, a failed
/// expectation, a cancelled task).
public func withTestStack<R>(
    calendar settings: CalendarSimulator.Settings = CalendarSimulator.Settings(),
    configuration: EngineConfiguration = TestStack.loopbackAllowed,
    ledger: LedgerConfiguration = LedgerConfiguration(),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (TestStack) async throws -> R
) async throws -> R {
    let stack = try await TestStack(calendar: settings, configuration: configuration, ledger: ledger)
    do {
        let result = try await body(stack)
        await stack.stop()
        return result
    } catch {
        await stack.stop()
        throw error
    }
}

/// Ledgerflow assembled in-process against the shared nats-server and real LMDB files: projector, API and
/// simulators in one service group, the engine in another (so it can be stopped and started again).
public final class TestStack: @unchecked Sendable {
    public let ledger: Ledger
    public let store: ReadModelStore
    /// The data directory: the read models are in its `lmdb/`, as `ledgerflow serve --data-dir` lays them out.
    public let lmdb: TemporaryDirectory
    public let port: Int
    public let calendar: CalendarSimulator
    public let discovery: DiscoverySimulator
    public let notifications: NotificationSimulator
    /// A connection of the world outside Ledgerflow (the assistant): it publishes commands and observes.
    public let outside: NATSConnection
    public let token = "test-admin-token"
    /// Tokens with the lower roles, known to the API and to `automation.flow.run`.
    public static let operatorToken = "test-operator-token"
    public static let viewerToken = "test-viewer-token"
    /// The stack's tokens: the admin token (subject `tester`), an operator (`otto`) and a viewer (`vera`).
    public static let tokens: AccessTokens = try! AccessTokens([
        AccessToken(token: "test-admin-token", subject: "tester", role: .admin),
        AccessToken(token: operatorToken, subject: "otto", role: .`operator`),
        AccessToken(token: viewerToken, subject: "vera", role: .viewer),
    ])
    /// A client of the stack's API, with the admin token.
    public let client: TestHTTPClient
    public private(set) var engine: Engine
    private var infra: (ServiceGroup, Task<Void, any Error>)?
    private var engineRun: (ServiceGroup, Task<Void, any Error>)?

    /// The calendar flow of the README.
    public static var example: JSONValue { Fixtures.calendarCreateEvent }

    /// Stacks not stopped yet (one made without `withTestStack`): the next test stops them before it starts.
    static let live = Mutex<[TestStack]>([])
    private let stopping = Mutex<Task<Void, Never>?>(nil)

    public static func stopAll() async {
        for stack in live.withLock({ stacks in
            defer { stacks.removeAll() }; return stacks
        }) { await stack.stop() }
    }

    /// The engine's settings (every engine of the stack gets them).
    public let configuration: EngineConfiguration

    /// The tests' own HTTP services listen on loopback, as `ledgerflow dev`'s do: allowed unless a test says otherwise.
    public static let loopbackAllowed: EngineConfiguration = {
        var configuration = EngineConfiguration()
        configuration.outbound = OutboundPolicy(httpAllow: OutboundPolicy.loopback)
        // A worker that stopped is taken over after a second (tests of takeovers wait for it).
        configuration.leaseTTL = .seconds(1)
        return configuration
    }()

    public init(
        calendar settings: CalendarSimulator.Settings = CalendarSimulator.Settings(),
        configuration: EngineConfiguration = TestStack.loopbackAllowed,
        ledger ledgerConfiguration: LedgerConfiguration = LedgerConfiguration()
    ) async throws {
        var configuration = configuration
        if configuration.tokens == nil { configuration.tokens = Self.tokens }
        self.configuration = configuration
        ledger = try await freshLedger(configuration: ledgerConfiguration)
        lmdb = TemporaryDirectory()
        store = try ReadModelStore(path: "\(lmdb.path)/lmdb", mapSize: 1 << 30)
        port = LocalNATSServer.freePort()
        client = TestHTTPClient(port: port, token: token)
        outside = try await NATSConnection.connect(url: TestServer.url, name: "test-outside", logger: testLogger)
        calendar = try await CalendarSimulator.connect(url: TestServer.url, settings: settings, logger: testLogger)
        discovery = try await DiscoverySimulator.connect(url: TestServer.url, logger: testLogger)
        notifications = try await NotificationSimulator.connect(url: TestServer.url, logger: testLogger)
        engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: testLogger)
        let projector = Projector(ledger: ledger, store: store, logger: testLogger)
        let app = buildApplication(
            APIDependencies(
                ledger: ledger, store: store, engine: engine,
                tokens: configuration.tokens ?? Self.tokens),
            port: port, logger: testLogger)
        infra = Self.run([projector, app, calendar, discovery, notifications])
        startEngine()
        Self.live.withLock { $0.append(self) }
        try await waitForHTTP()
    }

    public static func run(_ services: [any Service]) -> (ServiceGroup, Task<Void, any Error>) {
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [], logger: testLogger))
        return (group, Task { try await group.run() })
    }

    public func startEngine() {
        engineRun = Self.run([engine])
    }

    /// Stops the engine as a clean shutdown would; runs in flight stay in the log.
    public func stopEngine() async {
        guard let (group, task) = engineRun else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        engineRun = nil
    }

    /// A new engine process, as after a restart: nothing in memory, everything from the log and the read models.
    public func restartEngine() {
        engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: testLogger)
        startEngine()
    }

    private var others:
        [(group: ServiceGroup, task: Task<Void, any Error>, directory: TemporaryDirectory, engine: Engine)] = []

    /// Another engine process sharing the same NATS: its own connection, read models and projector.
    public func addEngine() async throws -> Engine {
        let ledger = try await Ledger.open(url: TestServer.url, clientName: "second-engine", logger: testLogger)
        let directory = TemporaryDirectory()
        let store = try ReadModelStore(path: directory.path, mapSize: 1 << 30)
        let engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: testLogger)
        let (group, task) = Self.run([Projector(ledger: ledger, store: store, logger: testLogger), engine])
        others.append((group, task, directory, engine))
        return engine
    }

    /// Stops an engine made by `addEngine` (with its projector), as a clean shutdown would.
    public func stopAddedEngine(_ engine: Engine) async {
        guard let index = others.firstIndex(where: { $0.engine === engine }) else { return }
        let (group, task, _, _) = others.remove(at: index)
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    /// Stops everything; every caller waits until it has stopped (a second caller waits for the first).
    public func stop() async {
        let task = stopping.withLock { task in
            if task == nil { task = Task { await self.stopNow() } }
            return task!
        }
        await task.value
    }

    private func stopNow() async {
        for (group, task, _, _) in others {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        }
        await stopEngine()
        if let (group, task) = infra {
            await group.triggerGracefulShutdown()
            _ = try? await task.value
        }
        outside.close()
        ledger.close()
    }

    func waitForHTTP() async throws {
        try await eventually("the HTTP API answers") { await self.client.status("/health") == 200 }
    }

    /// Waits until the simulated services hear their commands again (after NATS came back): a command published
    /// before one of them resubscribed is not heard, and its step waits for its timeout (300 s in the example).
    public func waitForSimulators(timeout: Duration = .seconds(30)) async throws {
        try await eventually("the simulated services are connected and subscribed again", timeout: timeout) {
            let calendar = await self.calendar.isListening()
            let discovery = await self.discovery.isListening()
            let notifications = await self.notifications.isListening()
            return calendar && discovery && notifications
        }
    }

    /// A request to the stack's API with the admin token (or `token`; `nil` for none).
    public func http(
        _ method: String, _ path: String, _ body: JSONValue? = nil, token: TestHTTPClient.Token = .client
    ) async throws -> (Int, JSONValue) {
        try await client.json(method, path, body, token: token)
    }

    /// Registers and activates the example flow over HTTP.
    public func activateExample() async throws {
        let (created, _) = try await http("POST", "/automation/flows", Self.example)
        precondition(created == 201, "register answered \(created)")
        let (activated, _) = try await http("POST", "/automation/flows/calendar-create-event/activate")
        precondition(activated == 200, "activate answered \(activated)")
    }

    /// Publishes an `AssistantCommandIssued` the way the assistant would (a plain NATS publish).
    public func publishCommand(
        id: String = EventID.make(), title: String = "Dentist", signalID: String? = nil, suggestions: Bool = false,
        intent: String = "calendar.create_event"
    ) throws {
        var data: [String: JSONValue] = [
            "message_id": .string("m-\(id)"), "intent": .string(intent),
            "entities": [
                "title": .string(title), "start": "2026-11-24T10:00:00Z", "with_suggestions": .bool(suggestions),
            ],
            "user": ["id": "u-1"], "channel": ["type": "chat", "conversation_id": "c-9"],
        ]
        if let signalID { data["signal_id"] = .string(signalID) }
        let event = CloudEvent(
            id: id, source: "assistant", type: EventType.assistantCommandIssued, data: JSONValue.object(data))
        try outside.publish(
            subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event),
            headers: ["Nats-Msg-Id": id])
    }

    /// Every message of the log, decoded as CloudEvents (undecodable ones as nil).
    public func log() async throws -> [(sequence: UInt64, subject: String, event: CloudEvent<JSONValue>?)] {
        try await ledger.read(subject: nil).map {
            ($0.sequence, $0.subject, try? JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data($0.payload)))
        }
    }

    public func runs() throws -> [RunState] { try store.runs(flowID: nil, status: nil, limit: 10_000) }

    public func waitForRuns(
        _ count: Int, status: RunStatus = .succeeded, timeout: Duration = .seconds(20)
    ) async throws -> [RunState] {
        try await eventually("\(count) run(s) \(status.rawValue)", timeout: timeout) {
            try self.runs().filter { $0.status == status }.count >= count
        }
        return try runs().filter { $0.status == status }
    }
}

/// Services a test started (a local HTTP service, say), stopped once by whichever caller comes first.
public final class RunningServices: Sendable {
    private let running = Mutex<(ServiceGroup, Task<Void, any Error>)?>(nil)

    public init() {}

    /// Runs `services` in a service group of their own (see `TestStack.run`).
    public func start(_ services: [any Service]) {
        running.withLock { $0 = TestStack.run(services) }
    }

    /// Shuts them down gracefully and waits until they have stopped.
    public func stop() async {
        guard let (group, task) = running.withLock({ $0.take() }) else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
