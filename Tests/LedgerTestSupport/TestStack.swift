import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import LedgerAPI
import LedgerCore
@testable import LedgerEngine
import LedgerNATS
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Ledgerflow assembled in-process against the shared nats-server and real LMDB files: projector, API and
/// simulators in one service group, the engine in another (so it can be stopped and started again).
final class TestStack: @unchecked Sendable {
    let ledger: Ledger
    let store: ReadModelStore
    /// The data directory: the read models are in its `lmdb/`, as `ledgerflow serve --data-dir` lays them out.
    let lmdb: TemporaryDirectory
    let port: Int
    let calendar: CalendarSimulator
    let discovery: DiscoverySimulator
    let outside: NATSConnection
    let token = "test-admin-token"
    private(set) var engine: Engine
    private var infra: (ServiceGroup, Task<Void, any Error>)?
    private var engineRun: (ServiceGroup, Task<Void, any Error>)?

    static let example: JSONValue = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/calendar-create-event.json")
        return try! JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url))
    }()

    /// Stacks not stopped yet: the next test stops them before it starts (a `defer` cannot await).
    static let live = Mutex<[TestStack]>([])
    private let stopping = Mutex<Task<Void, Never>?>(nil)

    static func stopAll() async {
        for stack in live.withLock({ stacks in defer { stacks.removeAll() }; return stacks }) { await stack.stop() }
    }

    /// The engine's settings (every engine of the stack gets them).
    let configuration: EngineConfiguration

    /// The tests' own HTTP services listen on loopback, as `ledgerflow dev`'s do: allowed unless a test says otherwise.
    static let loopbackAllowed: EngineConfiguration = {
        var configuration = EngineConfiguration()
        configuration.outbound = OutboundPolicy(httpAllow: OutboundPolicy.loopback)
        return configuration
    }()

    init(calendar settings: CalendarSimulator.Settings = CalendarSimulator.Settings(), configuration: EngineConfiguration = TestStack.loopbackAllowed) async throws {
        self.configuration = configuration
        ledger = try await freshLedger()
        lmdb = TemporaryDirectory()
        store = try ReadModelStore(path: "\(lmdb.path)/lmdb", mapSize: 1 << 30)
        port = LocalNATSServer.freePort()
        outside = try await NATSConnection.connect(url: TestServer.shared.url, name: "test-outside", logger: testLogger)
        calendar = CalendarSimulator(connection: outside, settings: settings, logger: testLogger)
        discovery = DiscoverySimulator(connection: outside, logger: testLogger)
        engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: testLogger)
        let projector = Projector(ledger: ledger, store: store, logger: testLogger)
        let app = buildApplication(
            APIDependencies(ledger: ledger, store: store, engine: engine, tokens: TokenStore([TokenGrant(token: token, subject: "tester", role: .admin)])),
            port: port, logger: testLogger)
        infra = Self.run([projector, app, calendar, discovery])
        startEngine()
        Self.live.withLock { $0.append(self) }
        try await waitForHTTP()
    }

    static func run(_ services: [any Service]) -> (ServiceGroup, Task<Void, any Error>) {
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [], logger: testLogger))
        return (group, Task { try await group.run() })
    }

    func startEngine() {
        engineRun = Self.run([engine])
    }

    /// Stops the engine as a clean shutdown would; runs in flight stay in the log.
    func stopEngine() async {
        guard let (group, task) = engineRun else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        engineRun = nil
    }

    /// A new engine process, as after a restart: nothing in memory, everything from the log and the read models.
    func restartEngine() {
        engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: testLogger)
        startEngine()
    }

    private var others: [(ServiceGroup, Task<Void, any Error>, TemporaryDirectory)] = []

    /// Another engine process sharing the same NATS: its own connection, read models and projector.
    func addEngine() async throws -> Engine {
        let ledger = try await Ledger.open(url: TestServer.shared.url, clientName: "second-engine", logger: testLogger)
        let directory = TemporaryDirectory()
        let store = try ReadModelStore(path: directory.path, mapSize: 1 << 30)
        let engine = Engine(ledger: ledger, store: store, configuration: configuration, logger: testLogger)
        let (group, task) = Self.run([Projector(ledger: ledger, store: store, logger: testLogger), engine])
        others.append((group, task, directory))
        return engine
    }

    /// Stops everything; every caller waits until it has stopped (a second caller waits for the first).
    func stop() async {
        let task = stopping.withLock { task in
            if task == nil { task = Task { await self.stopNow() } }
            return task!
        }
        await task.value
    }

    private func stopNow() async {
        for (group, task, _) in others {
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
        try await eventually("the HTTP API answers") { (try? await self.http("GET", "/health"))?.0 == 200 }
    }

    func http(_ method: String, _ path: String, _ body: JSONValue? = nil, token: String? = "default") async throws -> (Int, JSONValue) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let token { request.setValue("Bearer \(token == "default" ? self.token : token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body.compactJSON.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as! HTTPURLResponse).statusCode
        return (status, (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self)))
    }

    /// Registers and activates the example flow over HTTP.
    func activateExample() async throws {
        let (created, _) = try await http("POST", "/automation/flows", Self.example)
        precondition(created == 201, "register answered \(created)")
        let (activated, _) = try await http("POST", "/automation/flows/calendar-create-event/activate")
        precondition(activated == 200, "activate answered \(activated)")
    }

    /// Publishes an `AssistantCommandIssued` the way the assistant would (a plain NATS publish).
    func publishCommand(id: String = EventID.make(), title: String = "Dentist", signalID: String? = nil, suggestions: Bool = false) throws {
        var data: [String: JSONValue] = [
            "message_id": .string("m-\(id)"), "intent": "calendar.create_event",
            "entities": ["title": .string(title), "start": "2026-11-24T10:00:00Z", "with_suggestions": .bool(suggestions)],
            "user": ["id": "u-1"], "channel": ["type": "chat", "conversation_id": "c-9"],
        ]
        if let signalID { data["signal_id"] = .string(signalID) }
        let event = CloudEvent(id: id, source: "assistant", type: EventType.assistantCommandIssued, data: JSONValue.object(data))
        try outside.publish(subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event), headers: ["Nats-Msg-Id": id])
    }

    /// Every message of the log, decoded as CloudEvents (undecodable ones as nil).
    func log() async throws -> [(sequence: UInt64, subject: String, event: CloudEvent<JSONValue>?)] {
        try await ledger.read(subject: nil).map { ($0.sequence, $0.subject, try? JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data($0.payload))) }
    }

    func runs() throws -> [RunState] { try store.runs(flowID: nil, status: nil, limit: 10_000) }

    func waitForRuns(_ count: Int, status: RunStatus = .succeeded, timeout: Duration = .seconds(20)) async throws -> [RunState] {
        try await eventually("\(count) run(s) \(status.rawValue)", timeout: timeout) {
            try self.runs().filter { $0.status == status }.count >= count
        }
        return try runs().filter { $0.status == status }
    }
}
