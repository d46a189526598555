import Foundation
public import LedgerCore
import LedgerNATS
public import Logging
public import ServiceLifecycle
import Synchronization

/// Stands in for the calendar service over the SPEC's subjects: answers `CalendarCommand.*` with
/// `CalendarEvent.*`, honouring each command's idempotency key (the same key never creates a second event).
/// It stands for another service, so it has a NATS connection of its own, closed when `run()` ends.
public final class CalendarSimulator: Service, Sendable {
    public struct Settings: Sendable {
        /// Delay before each answer.
        public var latency: Duration = .zero
        /// Probability that a command fails (answered with `CreateFailed`, retryable).
        public var failureRate: Double = 0
        /// The first N commands of each idempotency key fail (retryable), then they succeed.
        public var failFirst: Int = 0
        /// Fail with `retryable: false` instead.
        public var permanentFailures = false
        /// Do not answer at all (the engine's step timeout takes over).
        public var silent = false
        /// Commands whose data this holds for fail (as `permanentFailures` says), whatever the other switches.
        public var failWhen: (@Sendable (JSONValue) -> Bool)?
        public init() {}
    }

    struct CalendarEntry: Sendable {
        var eventID: String
        var fields: JSONValue
        var canceled = false
    }

    /// What the simulator received under one idempotency key: how often each command (by its `command_id`) came,
    /// and of which type. The same command id received twice is a re-send of one attempt; each new command id under
    /// the key is another attempt at the same effect.
    public struct Received: Sendable, Equatable {
        public var type: String
        public var commands: [String: Int] = [:]
        /// Whether the simulator created an event for the key (at most one, whatever came).
        public var created = false
    }

    struct Books: Sendable {
        var byKey: [String: CalendarEntry] = [:]
        var attemptsByKey: [String: Int] = [:]
        var received: [String: Received] = [:]
        var commandsReceived = 0
        var eventsCreated = 0
    }

    let connection: NATSConnection

    /// Whether it hears its commands now: connected, its subscription at the server (after a reconnect, before this
    /// is true, commands published meanwhile were not heard: core NATS keeps nothing for an absent subscriber).
    public func isListening() async -> Bool { await listening(on: connection) }
    let settings: Mutex<Settings>
    let logger: Logger
    private let books = Mutex(Books())

    init(connection: NATSConnection, settings: Settings, logger: Logger) {
        self.connection = connection
        self.settings = Mutex(settings)
        self.logger = logger
    }

    /// Connects to the NATS server at `url` as the calendar service would; `run()` then answers its commands.
    public static func connect(
        url: String, settings: Settings = Settings(), connectOptions: NATSConnectOptions = .none, logger: Logger
    ) async throws -> CalendarSimulator {
        let connection = try await NATSConnection.connect(
            url: url, name: "calendar-simulator", logger: logger, credentials: connectOptions)
        return CalendarSimulator(connection: connection, settings: settings, logger: logger)
    }

    /// Changes the switches while running.
    public func update(_ change: (inout Settings) -> Void) { settings.withLock { change(&$0) } }

    /// How many calendar events were really created (one per idempotency key).
    public var eventsCreated: Int { books.withLock { $0.eventsCreated } }
    public var commandsReceived: Int { books.withLock { $0.commandsReceived } }
    public func createdCount(forKey key: String) -> Int { books.withLock { $0.byKey[key] == nil ? 0 : 1 } }
    /// Everything received so far, by idempotency key (for the chaos harness's count of effects and re-sends).
    public func received() -> [String: Received] { books.withLock { $0.received } }

    public func run() async throws {
        try await answerEach(
            on: connection, subject: Subjects.calendarCommands, queue: "calendar-simulator", logger: logger
        ) {
            await self.answer($0)
        }
    }

    func answer(_ message: NATSMessage) async {
        let codec = EventCodec()
        let types = [EventType.calendarSchedule, EventType.calendarUpdate, EventType.calendarCancel]
        guard
            case .success(let command) = decodeInbound(
                message.payload, expectedTypes: types, required: ["command_id", "idempotency_key"], codec: codec)
        else {
            logger.warning("calendar simulator ignored an unreadable command on \(message.subject)")
            return
        }
        let settings = self.settings.withLock { $0 }
        if settings.silent { return }
        if settings.latency > .zero { try? await Task.sleep(for: settings.latency) }
        let key = command.data["idempotency_key"]!.stringValue ?? ""
        let commandID = command.data["command_id"]!.stringValue ?? ""
        let attempt = books.withLock { books -> Int in
            books.commandsReceived += 1
            books.attemptsByKey[key, default: 0] += 1
            books.received[key, default: Received(type: command.type)].commands[commandID, default: 0] += 1
            return books.attemptsByKey[key]!
        }
        if attempt <= settings.failFirst || settings.failWhen?(command.data) == true
            || (settings.failureRate > 0 && Double.random(in: 0..<1) < settings.failureRate)
        {
            await publish(
                type: EventType.calendarCreateFailed, subject: Subjects.calendarCreateFailed,
                data: [
                    "command_id": .string(commandID), "reason": "calendar temporarily unavailable (simulated failure)",
                    "retryable": .bool(!settings.permanentFailures),
                ], causation: command.id)
            return
        }
        var fields = command.data.objectValue ?? [:]
        for key in ["command_id", "idempotency_key", "on_behalf_of"] { fields.removeValue(forKey: key) }
        switch command.type {
        case EventType.calendarSchedule:
            let entry = books.withLock { books -> CalendarEntry in
                if let existing = books.byKey[key] { return existing }
                let entry = CalendarEntry(eventID: "evt-" + DerivedID.uuid(key).prefix(13), fields: .object(fields))
                books.byKey[key] = entry
                books.eventsCreated += 1
                books.received[key]?.created = true
                return entry
            }
            var data = entry.fields.objectValue ?? [:]
            data["command_id"] = .string(commandID)
            data["event_id"] = .string(entry.eventID)
            await publish(
                type: EventType.calendarCreated, subject: Subjects.calendarCreated, data: .object(data),
                causation: command.id)
        case EventType.calendarUpdate:
            var data = fields
            data["command_id"] = .string(commandID)
            await publish(
                type: EventType.calendarUpdated, subject: Subjects.calendarUpdated, data: .object(data),
                causation: command.id)
        default:
            await publish(
                type: EventType.calendarCanceled, subject: Subjects.calendarCanceled,
                data: [
                    "command_id": .string(commandID), "event_id": command.data["event_id"] ?? .null,
                ], causation: command.id)
        }
    }

    func publish(type: String, subject: String, data: JSONValue, causation: String) async {
        let event = CloudEvent(source: LedgerSource.calendarSimulator, type: type, causationid: causation, data: data)
        do {
            // A plain publish, as the real service would do; the stream captures the subject.
            try connection.publish(
                subject: subject, payload: try EventCodec().encode(event), headers: ["Nats-Msg-Id": event.id])
        } catch {
            logger.warning("calendar simulator could not answer: \(error)")
        }
    }
}

/// Stands in for the discovery service: answers `discovery.search` requests with deterministic results, over a
/// NATS connection of its own (closed when `run()` ends).
public final class DiscoverySimulator: Service, Sendable {
    public struct Settings: Sendable {
        /// Delay before each answer.
        public var latency: Duration = .zero
        /// Probability that a request is refused (a 503 problem: the step retries it).
        public var failureRate: Double = 0
        /// Refuse with a 400 problem instead (the step fails at once).
        public var permanentFailures = false
        /// Do not answer at all (the step's request times out).
        public var silent = false
        public init() {}
    }

    let connection: NATSConnection

    /// Whether it hears its commands now: connected, its subscription at the server (after a reconnect, before this
    /// is true, commands published meanwhile were not heard: core NATS keeps nothing for an absent subscriber).
    public func isListening() async -> Bool { await listening(on: connection) }
    let logger: Logger
    let settings: Mutex<Settings>
    private let served = Atomic<Int>(0)

    init(connection: NATSConnection, settings: Settings, logger: Logger) {
        self.connection = connection
        self.settings = Mutex(settings)
        self.logger = logger
    }

    /// Connects to the NATS server at `url` as the discovery service would; `run()` then answers its requests.
    public static func connect(
        url: String, settings: Settings = Settings(), connectOptions: NATSConnectOptions = .none, logger: Logger
    ) async throws -> DiscoverySimulator {
        let connection = try await NATSConnection.connect(
            url: url, name: "discovery-simulator", logger: logger, credentials: connectOptions)
        return DiscoverySimulator(connection: connection, settings: settings, logger: logger)
    }

    /// Changes the switches while running.
    public func update(_ change: (inout Settings) -> Void) { settings.withLock { change(&$0) } }

    /// Requests received (answered or not).
    public var requestsServed: Int { served.load(ordering: .relaxed) }

    public func run() async throws {
        try await answerEach(
            on: connection, subject: Subjects.discoverySearch, queue: "discovery-simulator", logger: logger
        ) {
            await self.answer($0)
        }
    }

    static func problem(status: Int, title: String, detail: String, code: String) -> JSONValue {
        [
            "error": [
                "type": "about:blank", "title": .string(title), "status": .number(Double(status)),
                "detail": .string(detail), "code": .string(code),
            ]
        ]
    }

    func answer(_ message: NATSMessage) async {
        guard let reply = message.reply else { return }
        served.add(1, ordering: .relaxed)
        let settings = self.settings.withLock { $0 }
        if settings.silent { return }
        if settings.latency > .zero { try? await Task.sleep(for: settings.latency) }
        let data: JSONValue
        switch decodeInbound(
            message.payload, expectedTypes: ["DiscoverySearch"], required: ["query"], codec: EventCodec())
        {
        case .failure(let problem):
            data = Self.problem(status: 400, title: "Bad request", detail: problem.reason, code: "bad_request")
        case .success where settings.failureRate > 0 && Double.random(in: 0..<1) < settings.failureRate:
            data =
                settings.permanentFailures
                ? Self.problem(
                    status: 400, title: "Bad request", detail: "the search refused the query (simulated)",
                    code: "bad_request")
                : Self.problem(
                    status: 503, title: "Unavailable", detail: "search temporarily unavailable (simulated)",
                    code: "unavailable")
        case .success(let request):
            let query = request.data["query"]?.interpolated ?? ""
            let topN = (request.data["top_n"]?.numberValue ?? 3).exactInt(in: 0...100) ?? 3
            data = [
                "results": .array(
                    (1...max(1, min(topN, 10))).map { i in
                        [
                            "title": .string("\(query) — result \(i)"), "url": .string("https://example.invalid/\(i)"),
                            "score": .number(1.0 / Double(i)),
                        ]
                    })
            ]
        }
        let event = CloudEvent(source: LedgerSource.discoverySimulator, type: "DiscoverySearchResult", data: data)
        try? connection.publish(subject: reply, payload: (try? EventCodec().encode(event)) ?? [])
    }
}

/// Stands in for the notification service ("Avisos"): takes `NotificationRequested` from
/// `notifications.command.send` and answers `Notification.Sent` (or `Notification.Failed`) on
/// `notifications.event.sent|failed` with the command's `command_id`, once per idempotency key. Its own NATS
/// connection, closed when `run()` ends.
public final class NotificationSimulator: Service, Sendable {
    public struct Settings: Sendable {
        /// Delay before each answer.
        public var latency: Duration = .zero
        /// Probability that a notification fails (`Notification.Failed`).
        public var failureRate: Double = 0
        /// Never answer (the service takes requests and says nothing).
        public var silent = false
        /// Failures say `retryable: false` (the recipient can never be reached) instead of `true`.
        public var permanentFailures = false
        public init() {}
    }

    struct Books: Sendable {
        var sent: [String: String] = [:]
        var received = 0
    }

    let connection: NATSConnection

    /// Whether it hears its commands now: connected, its subscription at the server (after a reconnect, before this
    /// is true, commands published meanwhile were not heard: core NATS keeps nothing for an absent subscriber).
    public func isListening() async -> Bool { await listening(on: connection) }
    let logger: Logger
    let settings: Mutex<Settings>
    private let books = Mutex(Books())

    init(connection: NATSConnection, settings: Settings, logger: Logger) {
        self.connection = connection
        self.settings = Mutex(settings)
        self.logger = logger
    }

    /// Connects to the NATS server at `url` as the notification service would; `run()` then answers.
    public static func connect(
        url: String, settings: Settings = Settings(), connectOptions: NATSConnectOptions = .none, logger: Logger
    ) async throws -> NotificationSimulator {
        let connection = try await NATSConnection.connect(
            url: url, name: "notification-simulator", logger: logger, credentials: connectOptions)
        return NotificationSimulator(connection: connection, settings: settings, logger: logger)
    }

    /// Changes the switches while running.
    public func update(_ change: (inout Settings) -> Void) { settings.withLock { change(&$0) } }

    /// Requests received, and notifications really sent (one per idempotency key).
    public var requestsReceived: Int { books.withLock { $0.received } }
    public var notificationsSent: Int { books.withLock { $0.sent.count } }

    public func run() async throws {
        try await answerEach(
            on: connection, subject: Subjects.notificationSend, queue: "notification-simulator", logger: logger
        ) {
            await self.answer($0)
        }
    }

    func answer(_ message: NATSMessage) async {
        guard
            case .success(let request) = decodeInbound(
                message.payload, expectedTypes: [EventType.notificationRequested],
                required: ["command_id", "idempotency_key"], codec: EventCodec())
        else {
            logger.warning("notification simulator ignored an unreadable request on \(message.subject)")
            return
        }
        let settings = self.settings.withLock { $0 }
        if settings.silent { return }
        if settings.latency > .zero { try? await Task.sleep(for: settings.latency) }
        let key = request.data["idempotency_key"]?.stringValue ?? ""
        let commandID = request.data["command_id"]?.stringValue ?? ""
        let failed = settings.failureRate > 0 && Double.random(in: 0..<1) < settings.failureRate
        let notificationID = books.withLock { books -> String? in
            books.received += 1
            if failed { return nil }
            if let first = books.sent[key] { return first }
            let id = "ntf-" + DerivedID.uuid(key).prefix(13)
            books.sent[key] = id
            return id
        }
        let event: CloudEvent<JSONValue>
        let subject: String
        if let notificationID {
            subject = Subjects.notificationSent
            event = CloudEvent(
                source: LedgerSource.notificationSimulator, type: EventType.notificationSent, causationid: request.id,
                data: [
                    "command_id": .string(commandID), "notification_id": .string(notificationID), "status": "sent",
                    "channel": request.data["channel"] ?? "chat",
                ])
        } else {
            subject = Subjects.notificationFailed
            event = CloudEvent(
                source: LedgerSource.notificationSimulator, type: EventType.notificationFailed,
                causationid: request.id,
                data: [
                    "command_id": .string(commandID), "status": "failed",
                    "reason": "the recipient could not be reached (simulated failure)",
                    "retryable": .bool(!settings.permanentFailures),
                ])
        }
        do {
            try connection.publish(
                subject: subject, payload: try EventCodec().encode(event), headers: ["Nats-Msg-Id": event.id])
        } catch {
            logger.warning("notification simulator could not answer: \(error)")
        }
    }
}

/// Whether `connection` is connected and the server has everything sent before (its subscriptions among them).
func listening(on connection: NATSConnection) async -> Bool {
    guard connection.isConnected else { return false }
    return (try? await connection.flush(timeout: .seconds(2))) != nil
}

/// Answers each message on `subject` (in the queue group `queue`, so several copies share the work) with `answer`,
/// concurrently, until a graceful shutdown; closes `connection` when done.
func answerEach(
    on connection: NATSConnection, subject: String, queue: String, logger: Logger,
    _ answer: @escaping @Sendable (NATSMessage) async -> Void
) async throws {
    defer { connection.close() }
    let subscription = try connection.subscribe(subject: subject, queue: queue)
    try await connection.flush()
    logger.info("\(queue) answering on \(subject)")
    await withGracefulShutdownHandler {
        await withTaskGroup(of: Void.self) { group in
            for await message in subscription.messages {
                group.addTask { await answer(message) }
            }
        }
    } onGracefulShutdown: {
        subscription.unsubscribe()
    }
}
