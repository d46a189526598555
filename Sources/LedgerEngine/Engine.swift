import Foundation
public import LedgerCore
import LedgerNATS
import LedgerProjections
public import Logging
public import ServiceLifecycle
public import Synchronization

/// Settings of the engine.
public struct EngineConfiguration: Sendable {
    /// The durable consumer of inbound subjects.
    public var consumerName = "engine"
    public var fetchBatch = 256
    public var ackWait: Duration = .seconds(30)
    /// How long a decision waits for the read models to reach the log position it is decided at.
    public var projectionWait: Duration = .seconds(5)
    /// How long `discovery.search` results are reused for the same query.
    public var discoveryCacheTTL: Duration = .seconds(60)
    /// Circuit breakers per action (and per host for `http.request`).
    public var breakers = CircuitBreakers.Settings()
    /// Deliveries of an inbound message whose handling keeps failing before it is recorded and given up.
    public var maxDeliveries = Limits.maxDeliveries
    /// Where `http.request` and `emit` may send beyond the defaults (`--http-allow`, `--emit-allow`).
    public var outbound = OutboundPolicy()
    public init() {}
}

/// Why the engine refused a request, in terms the HTTP API maps to SPEC §4 codes.
public enum EngineError: Error, CustomStringConvertible, Sendable {
    case flowNotFound(String)
    case runNotFound(String)
    case flowExists(String)
    case versionConflict(current: Int)
    case invalidState(String)
    case invalidDefinition([ValidationProblem])
    case badRequest(String)
    case unavailable(String)

    public var description: String {
        switch self {
        case .flowNotFound(let id): return "no flow with id \"\(id)\""
        case .runNotFound(let id): return "no run with id \"\(id)\""
        case .flowExists(let id): return "a flow with id \"\(id)\" already exists"
        case .versionConflict(let current): return "the definition was changed meanwhile: the current version is \(current)"
        case .invalidState(let text), .badRequest(let text), .unavailable(let text): return text
        case .invalidDefinition(let problems): return problems.map(\.description).joined(separator: "; ")
        }
    }
}

/// The outcome of asking for a run.
public enum RunStart: Sendable, Equatable {
    case started(runID: String, sequence: UInt64)
    /// The same signal (or idempotency key) already started this flow: no second run.
    case duplicate(runID: String)

    public var runID: String {
        switch self {
        case .started(let id, _), .duplicate(let id): return id
        }
    }
}

/// Messages into a run's mailbox.
enum RunMail: Sendable {
    case input(RunInput, done: (@Sendable () -> Void)?)
    case wake
    /// An operator's command (cancel, redrive): answered with nil once its event is in the log, or the refusal.
    case command(RunInput, reply: @Sendable (String?) -> Void)
}

/// The handle of a run being driven: its mailbox.
final class RunDriver: Sendable {
    let runID: String
    let mailbox: AsyncStream<RunMail>.Continuation
    init(runID: String, mailbox: AsyncStream<RunMail>.Continuation) {
        self.runID = runID
        self.mailbox = mailbox
    }
    func send(_ mail: RunMail) {
        guard case .terminated = mailbox.yield(mail) else { return }
        // The run finished meanwhile: a late answer is acknowledged (the log keeps it), a command is refused.
        switch mail {
        case .input(_, let done): done?()
        case .command(_, let reply): reply("run \(runID) finished meanwhile; read it again")
        case .wake: break
        }
    }
}

/// The orchestrator: consumes inbound subjects, starts runs, and drives each run by appending its decisions
/// to the run's subject with the run's expected last sequence.
public final class Engine: Service, Sendable {
    public let ledger: Ledger
    public let store: ReadModelStore
    public let configuration: EngineConfiguration
    let registry: ActionRegistry
    let catalog: FlowCatalog
    let executor: StepExecutor
    public let breakers: CircuitBreakers
    let logger: Logger
    private let drivers = Mutex<[String: RunDriver]>([:])
    private let tasks = Mutex<[String: Task<Void, Never>]>([:])
    /// Set once runs in flight at start have been picked up.
    public let ready = Atomic<Bool>(false)
    /// Runs this process started, and events it appended to runs (for health and tests).
    public let runsStarted = Atomic<Int>(0)
    public let eventsAppended = Atomic<Int>(0)
    public let messagesRejected = Atomic<Int>(0)
    /// Inbound deliveries handed back for a later try (a transient failure).
    public let inboundRetries = Atomic<Int>(0)
    /// Fault injection for tests: an outcome to use instead of handling an inbound message (never set in production).
    let inboundFailpoint = Mutex<(@Sendable (NATSMessage) -> InboundOutcome?)?>(nil)

    public init(ledger: Ledger, store: ReadModelStore, configuration: EngineConfiguration = EngineConfiguration(), logger: Logger) {
        self.ledger = ledger
        self.store = store
        self.configuration = configuration
        self.registry = .builtIn
        self.catalog = FlowCatalog(store: store, registry: .builtIn)
        self.breakers = CircuitBreakers(settings: configuration.breakers)
        self.executor = StepExecutor(
            ledger: ledger, registry: .builtIn, discoveryCacheTTL: configuration.discoveryCacheTTL, breakers: breakers,
            outbound: configuration.outbound, logger: logger)
        self.logger = logger
    }

    /// Runs currently driven by this process.
    public var activeRunCount: Int { drivers.withLock { $0.count } }

    // MARK: - Service

    public func run() async throws {
        guard let requests = await cancelWhenGracefulShutdown({ await self.start() }) else { return }
        let answering = Task { await self.answerRunRequests(requests) }
        defer {
            requests.unsubscribe()
            answering.cancel()
        }
        try await cancelWhenGracefulShutdown {
            try await self.consumeInbound()
        }
        let running = tasks.withLock { Array($0.values) }
        for task in running { task.cancel() }
        await executor.shutdown()
    }

    /// Recovers and subscribes to run requests; a failure (NATS away) is retried with backoff, never stopping the
    /// process. Nil when the engine is stopped meanwhile.
    func start() async -> NATSSubscription? {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await recover()
                return try ledger.connection.subscribe(subject: Subjects.flowRunRequest, queue: "ledgerflow-engine")
            } catch {
                failures += 1
                let delay = Self.backoff(failures)
                logger.error("engine could not start (\(error)); trying again in \(delay)")
                do { try await Task.sleep(for: delay) } catch { return nil }
            }
        }
        return nil
    }

    /// Picks up every run that had not finished: waits for the read models to reach the end of the log as it is
    /// now, then drives each unfinished run from its folded state, re-sending the attempts in flight.
    public func recover() async throws {
        let end = try await ledger.lastSequence()
        if !(await store.progress.wait(for: end, timeout: .seconds(120))) {
            logger.warning("the read models did not reach log position \(end) in time; recovering from what they have")
        }
        var resumed = 0
        for runID in try store.activeRunIDs() {
            // One run that cannot be resumed (its state unreadable, its definition gone or no longer valid) is
            // logged and left as it is; it never keeps the engine from starting.
            do {
                guard let state = try store.run(runID), !state.status.isTerminal else { continue }
                guard let definition = try pinnedDefinition(of: state) else { continue }
                _ = launch(state: state, definition: definition, resume: true)
                resumed += 1
            } catch {
                logger.error("run \(runID) cannot be resumed: \(error)")
            }
        }
        if resumed > 0 { logger.info("resumed \(resumed) unfinished run(s) from the log") }
        ready.store(true, ordering: .releasing)
    }

    /// The driver of a run, loading the run from the read model when this process is not driving it yet; nil when
    /// the run is unknown or has finished. Throws when the read model cannot be read.
    func driver(for runID: String, seenAt sequence: UInt64) async throws -> RunDriver? {
        if let driver = drivers.withLock({ $0[runID] }) { return driver }
        var state = try store.run(runID)
        if state == nil, sequence > 1, await store.progress.wait(for: sequence - 1, timeout: configuration.projectionWait) {
            state = try store.run(runID)
        }
        guard let state, !state.status.isTerminal, let definition = try pinnedDefinition(of: state) else { return nil }
        return launch(state: state, definition: definition, resume: false)
    }

    /// The definition a run is pinned to; nil (logged) when the read model does not have it or it no longer
    /// validates, which no retry can change. Throws only when the read model cannot be read.
    func pinnedDefinition(of state: RunState) throws -> FlowDefinition? {
        do {
            guard let definition = try catalog.definition(flowID: state.flow_id, version: state.flow_version) else {
                logger.error("run \(state.run_id) is pinned to \(state.flow_id) v\(state.flow_version), which the read model does not have")
                return nil
            }
            return definition
        } catch let error as EngineError {
            logger.error("run \(state.run_id) is pinned to \(state.flow_id) v\(state.flow_version), which no longer validates: \(error)")
            return nil
        }
    }

    // MARK: - Manual runs over NATS (request/reply on automation.flow.run)

    func answerRunRequests(_ subscription: NATSSubscription) async {
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await message in subscription.messages {
                // Bounded: past the limit, the next request waits for one to finish (NATS buffers the rest).
                if running >= Limits.requestConcurrency {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await self.answerRunRequest(message) }
            }
        }
    }

    /// Starts a run for a `FlowRunRequested` and answers `{run_id}` or `{error: problem}`; the request and the reply
    /// are recorded on `ledger.request.flow_run` (the subject itself is not a stream subject).
    func answerRunRequest(_ message: NATSMessage) async {
        var answer: JSONValue
        var requestEvent: CloudEvent<JSONValue>?
        let decoded: Result<CloudEvent<JSONValue>, EnvelopeProblem> =
            message.payload.count > Limits.inboundMessageBytes
            ? .failure(EnvelopeProblem("the request is \(message.payload.count) bytes; requests may be at most \(Limits.inboundMessageBytes) bytes"))
            : decodeInbound(message.payload, expectedTypes: [EventType.flowRunRequested], required: ["flow_id"], codec: EventCodec())
        switch decoded.flatMap({ event in
            Self.identifierProblem(event.data, ["flow_id", "idempotency_key", "mode"], type: event.type).map { .failure(EnvelopeProblem($0)) } ?? .success(event)
        }) {
        case .failure(let problem):
            answer = ["error": Problem.badRequest(problem.reason).json]
        case .success(let event):
            requestEvent = event
            let mode: RunMode = event.data["mode"]?.stringValue == "dry_run" ? .dry : .live
            do {
                let outcome = try await requestRun(
                    flowID: event.data["flow_id"]?.stringValue ?? "", input: event.data["input"] ?? .object([:]), mode: mode,
                    idempotencyKey: event.data["idempotency_key"]?.stringValue, actor: "service:\(event.source)")
                answer = ["run_id": .string(outcome.runID)]
                if case .duplicate = outcome { answer = ["run_id": .string(outcome.runID), "duplicate": true] }
            } catch {
                answer = ["error": (Problem(refusal: error) ?? .unavailable("\(error)")).json]
            }
        }
        let reply = CloudEvent(type: "FlowRunRequested.Reply", correlationid: requestEvent?.id, causationid: requestEvent?.id, data: answer)
        var replyRefused: String?
        if let to = message.reply {
            if let refusal = ReplySubjectPolicy.refusal(to) {
                replyRefused = refusal
                logger.warning("not answering a request on \(Subjects.flowRunRequest): \(refusal)")
            } else if let payload = try? EventCodec().encode(reply) {
                try? ledger.connection.publish(subject: to, payload: payload)
            }
        }
        let record: JSONValue = [
            "request": requestEvent.map { ["id": .string($0.id), "source": .string($0.source), "data": $0.data] } ?? ["payload": .string(String(decoding: message.payload.prefix(65_536), as: UTF8.self))],
            "reply": answer, "reply_to": message.reply.map { JSONValue.string(String($0.prefix(256))) } ?? .null,
            "reply_refused": replyRefused.map(JSONValue.string) ?? .null,
        ]
        let recordEvent = CloudEvent(type: "FlowRunRequestHandled", correlationid: requestEvent?.id, data: record)
        if let payload = try? EventCodec().encode(recordEvent) {
            _ = try? await appendForever(OutgoingMessage(subject: Subjects.requestRecord("flow_run"), payload: payload, messageID: recordEvent.id))
        }
    }

    // MARK: - Starting runs

    /// Applies `inputs` defaults and checks required inputs and their types.
    func inputs(_ definition: FlowDefinition, given: JSONValue) -> JSONValue {
        var values = given.objectValue ?? [:]
        for (name, spec) in definition.inputs ?? [:] where values[name] == nil {
            if let value = spec.default { values[name] = value }
        }
        return .object(values)
    }

    func inputProblems(_ definition: FlowDefinition, _ input: JSONValue) -> [String] {
        var problems: [String] = []
        for (name, spec) in (definition.inputs ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let value = input[name], value != .null else {
                if spec.required ?? false { problems.append("input \(name) is required") }
                continue
            }
            let ok: Bool
            switch spec.type ?? "any" {
            case "string": ok = value.stringValue != nil
            case "number": ok = value.numberValue != nil
            case "integer": ok = value.numberValue.map { $0.rounded() == $0 } ?? false
            case "boolean": ok = value.boolValue != nil
            case "object": ok = value.objectValue != nil
            case "array": if case .array = value { ok = true } else { ok = false }
            default: ok = true
            }
            if !ok { problems.append("input \(name) must be of type \(spec.type ?? "any")") }
        }
        return problems
    }

    /// Starts a run of an active flow on request (HTTP, NATS or CLI), as a manual signal with `actor`.
    public func requestRun(flowID: String, input: JSONValue, mode: RunMode, idempotencyKey: String?, actor: String) async throws -> RunStart {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard record.status == "active", let version = record.active_version,
            let (definition, hash) = try catalog.pinned(flowID: flowID, version: version)
        else {
            throw EngineError.invalidState("flow \(flowID) is \(record.status); only active flows run (activate it first)")
        }
        let values = inputs(definition, given: input)
        let problems = inputProblems(definition, values)
        if !problems.isEmpty { throw EngineError.badRequest(problems.joined(separator: "; ")) }
        // The inputs stand where a chat command's entities stand, so `{{trigger.entities.<name>}}` renders the same
        // for a manual run; the start carries them once (the input is taken from the trigger).
        let trigger = RunTrigger(kind: "manual", event_type: nil, event_id: nil, sequence: nil, data: .object(["entities": values, "actor": .string(actor)]))
        return try await startRun(
            flowID: flowID, version: version, definition: definition, definitionHash: hash, trigger: trigger, input: values,
            inputFromTrigger: true,
            mode: mode, actor: actor,
            dedupKey: idempotencyKey.map { "manual:\($0)" }, messageID: nil, channel: nil)
    }

    /// Appends `FlowRunStarted` as the first event of the run's subject and starts driving the run. With a dedup
    /// key, the run id is derived from flow and key, so a second start is refused by the log itself (the subject
    /// already has a message), however long ago the first one was.
    public func startRun(
        flowID: String, version: Int, definition: FlowDefinition, definitionHash: String, trigger: RunTrigger, input: JSONValue,
        inputFromTrigger: Bool = false, mode: RunMode,
        actor: String, dedupKey: String?, messageID: String?, channel: JSONValue?
    ) async throws -> RunStart {
        let runID = dedupKey.map { DerivedID.uuid("\(flowID)/\($0)") } ?? EventID.make()
        if let dedupKey, let existing = try store.dedup(flowID: flowID, key: dedupKey) { return .duplicate(runID: existing) }
        var started = FlowRunStarted(
            run_id: runID, flow_id: flowID, flow_version: version, definition_hash: definitionHash, mode: mode,
            trigger: trigger, actor: actor, input: input, step_ids: definition.steps.map(\.id), dedup_key: dedupKey,
            message_id: messageID, channel: channel)
        if inputFromTrigger {
            (started.input, started.input_source) = FlowRunStarted.input(input, over: trigger)
        }
        let body = LedgerEvent.Body.runStarted(started)
        let id = EventID.make()
        let time = Timestamp.now()
        let payload = try body.encode(
            id: id, time: time, runid: runID, flowid: flowID, flowversion: version, correlationid: runID,
            causationid: trigger.event_id, codec: EventCodec())
        let ack: PublishAck
        do {
            ack = try await appendForever(OutgoingMessage(subject: Subjects.run(runID), payload: payload, messageID: id, expectedLastSubjectSequence: 0))
        } catch let error as NATSError where error.isWrongLastSequence {
            // The run's subject has a first event. When it is this very event (a retried publish whose first try
            // landed but whose acknowledgement was lost), the run is ours to drive; otherwise it is a repeat.
            guard let first = try await ledger.api.firstMessage(stream: ledger.stream, subject: Subjects.run(runID)) else {
                throw StartRefused(reason: "the run's subject \(Subjects.run(runID)) refused its first event but holds none")
            }
            let existing = try? JSONTree.decode(LedgerEvent.self, from: first.payload)
            if existing?.id == id {
                ack = PublishAck(sequence: first.seq, duplicate: true)
            } else if case .runStarted(let other)? = existing?.body, other.run_id == runID {
                return .duplicate(runID: runID)
            } else {
                // Something else was written there first: no run can start on this subject, and that is said.
                throw StartRefused(reason: "the run's subject \(Subjects.run(runID)) already holds a message that is not this run's start (log position \(first.seq))")
            }
        }
        let event = LedgerEvent(id: id, type: body.type, time: time, runid: runID, flowid: flowID, body: body)
        // `ack.duplicate` here can only mean our own retried publish landed twice (the event id is new for this
        // start); another start of the same run is refused by the expected sequence above. Either way it is ours.
        guard let state = RunState.evolve(nil, event, sequence: ack.sequence) else { return .duplicate(runID: runID) }
        runsStarted.add(1, ordering: .relaxed)
        _ = launch(state: state, definition: definition, resume: false)
        return .started(runID: runID, sequence: ack.sequence)
    }

    func appendForever(_ message: OutgoingMessage) async throws -> PublishAck {
        try await ledger.appendForever(message)
    }

    // MARK: - Driving runs

    /// Starts the run's driver (unless one runs already) and returns it.
    func launch(state: RunState, definition: FlowDefinition, resume: Bool, initial: RunMail? = nil) -> RunDriver {
        let (stream, continuation) = AsyncStream<RunMail>.makeStream(bufferingPolicy: .unbounded)
        let candidate = RunDriver(runID: state.run_id, mailbox: continuation)
        let (driver, isNew) = drivers.withLock { drivers -> (RunDriver, Bool) in
            if let existing = drivers[state.run_id] { return (existing, false) }
            drivers[state.run_id] = candidate
            return (candidate, true)
        }
        guard isNew else {
            continuation.finish()
            if let initial { driver.send(initial) }
            return driver
        }
        let task = Task {
            var loop = RunLoop(state: state, decider: RunDecider(definition: definition, registry: registry), driver: driver)
            await self.drive(&loop, stream: stream, resume: resume, initial: initial)
        }
        tasks.withLock { $0[state.run_id] = task }
        return driver
    }

    struct RunLoop {
        var state: RunState
        let decider: RunDecider
        let driver: RunDriver
        var timer: (at: Date, task: Task<Void, Never>)?
        var executions: [Task<Void, Never>] = []
    }

    func drive(_ loop: inout RunLoop, stream: AsyncStream<RunMail>, resume: Bool, initial: RunMail?) async {
        let runID = loop.state.run_id
        if resume {
            for (execution, startedAt) in loop.decider.inFlight(loop.state) {
                logger.info("run \(runID): re-sending attempt \(execution.attempt) of step \(execution.stepID) after a restart")
                execute(execution, startedAt: startedAt, &loop)
            }
        }
        if let initial {
            await handle(initial, &loop)
        } else {
            await process(.advance, &loop)
        }
        if !loop.state.status.isTerminal {
            for await mail in stream {
                await handle(mail, &loop)
                if loop.state.status.isTerminal || Task.isCancelled { break }
            }
        }
        loop.timer?.task.cancel()
        for execution in loop.executions { execution.cancel() }
        drivers.withLock { _ = $0.removeValue(forKey: runID) }
        tasks.withLock { _ = $0.removeValue(forKey: runID) }
        loop.driver.mailbox.finish()
        // Messages that reached the mailbox after the end: acknowledge answers (the run ignores late ones) and
        // answer operators' commands, so no caller waits for a run that has stopped.
        for await mail in stream {
            switch mail {
            case .input(_, let done): done?()
            case .command(_, let reply): reply("run \(runID) finished meanwhile (\(loop.state.status.rawValue)); read it again")
            case .wake: break
            }
        }
    }

    func handle(_ mail: RunMail, _ loop: inout RunLoop) async {
        switch mail {
        case .input(let input, let done):
            await process(Self.checked(input), &loop)
            done?()
        case .wake:
            loop.timer = nil
            await process(.advance, &loop)
        case .command(let input, let reply):
            if let refusal = loop.decider.refusal(loop.state, input) {
                reply(refusal)
                return
            }
            await process(input, &loop)
            reply(nil)
        }
    }

    /// Decides on `input`, carries the decision out, and keeps advancing while decisions append events.
    func process(_ input: RunInput, _ loop: inout RunLoop) async {
        var input = input
        for _ in 0..<10_000 {
            if Task.isCancelled { return }
            let steps = loop.decider.decide(loop.state, input, now: Date())
            var appended = false
            var conflict = false
            decision: for step in steps {
                switch step {
                case .append(let body):
                    do {
                        try await append(body, &loop)
                        appended = true
                    } catch let error as NATSError where error.isWrongLastSequence {
                        conflict = true
                        break decision
                    } catch is CancellationError {
                        return  // shutting down while NATS was away; the log and a restart carry on
                    } catch let error as UnstorableEvent {
                        // The event can never be stored: record its failure instead (a smaller event), and decide
                        // again from there; the actions that followed the refused event are not carried out.
                        guard let replacement = Self.replacement(for: body, error) else {
                            logger.error("run \(loop.state.run_id): its \(body.type) cannot be stored: \(error.detail)")
                            return
                        }
                        logger.warning("run \(loop.state.run_id): its \(body.type) cannot be stored (\(error.detail)); recording a failure instead")
                        do {
                            try await append(replacement, &loop)
                            appended = true
                            break decision
                        } catch {
                            logger.error("run \(loop.state.run_id): could not record that its \(body.type) could not be stored: \(error)")
                            return
                        }
                    } catch {
                        // Refused by JetStream for another reason (resources, say): try again later from the log's
                        // state; the run is never left waiting for nothing.
                        logger.error("run \(loop.state.run_id): JetStream refused its \(body.type) (\(error)); deciding again in 5 s")
                        schedule(Date().addingTimeInterval(5), &loop)
                        return
                    }
                case .execute(let execution):
                    execute(execution, startedAt: Date(), &loop)
                case .publishOutput(let output):
                    await publishOutput(output, &loop)
                case .wakeUp(let at):
                    schedule(at, &loop)
                }
            }
            if conflict {
                // Someone else appended to this run: fold it again from the log and decide anew on the same input.
                do {
                    let published = loop.state.output_sequence
                    loop.state = try await foldFromLog(loop.state.run_id) ?? loop.state
                    if loop.state.output_sequence == nil { loop.state.output_sequence = published }
                } catch {
                    logger.warning("run \(loop.state.run_id): could not re-read the run from the log: \(error)")
                    try? await Task.sleep(for: .milliseconds(200))
                }
                continue
            }
            input = .advance
            if !appended || loop.state.status.isTerminal { return }
        }
        logger.error("run \(loop.state.run_id): the decider kept producing events; stopping this pass")
    }

    func append(_ body: LedgerEvent.Body, _ loop: inout RunLoop) async throws {
        let id = EventID.make()
        let time = Timestamp.now()
        let state = loop.state
        // What the engine produced itself (a transform's output, a rendered request or output) is held to the
        // same depth as a service's answer, so the projector can always read the event and the run's state back.
        let depth = body.payloadDepth
        if depth > Limits.stepOutputDepth {
            throw UnstorableEvent(problem: "too_deep", detail: "nested \(depth) levels deep; at most \(Limits.stepOutputDepth) are kept")
        }
        let payload = try body.encode(
            id: id, time: time, runid: state.run_id, flowid: state.flow_id, flowversion: state.flow_version,
            correlationid: state.run_id, codec: EventCodec())
        let ack: PublishAck
        do {
            ack = try await appendForever(OutgoingMessage(
                subject: Subjects.run(state.run_id), payload: payload, messageID: id, expectedLastSubjectSequence: state.last_sequence))
        } catch let error as NATSError where error.jetStreamCode == JetStreamErrorCode.messageTooLarge {
            throw UnstorableEvent(problem: "too_large", detail: error.message)
        }
        let event = LedgerEvent(id: id, type: body.type, time: time, runid: state.run_id, flowid: state.flow_id, body: body)
        loop.state = RunState.evolve(state, event, sequence: ack.sequence) ?? state
        eventsAppended.add(1, ordering: .relaxed)
        recordOutcome(body, loop.decider.definition)
    }

    /// Feeds the circuit breakers with the outcome of calls to other services (http.request keeps its own per host).
    func recordOutcome(_ body: LedgerEvent.Body, _ definition: FlowDefinition) {
        switch body {
        case .stepAttemptSucceeded(let e), .compensationSucceeded(let e):
            if let action = action(of: e.step_id, body, definition), registry[action]?.kind != .local { breakers.record(action, success: true) }
        case .stepAttemptFailed(let e), .compensationFailed(let e):
            guard e.error.kind != "circuit_open", e.error.kind != "template", e.error.kind != "cancelled" else { return }
            if let action = action(of: e.step_id, body, definition), registry[action]?.kind != .local { breakers.record(action, success: false) }
        default:
            break
        }
    }

    func action(of stepID: String, _ body: LedgerEvent.Body, _ definition: FlowDefinition) -> String? {
        guard let step = definition.step(stepID) else { return nil }
        switch body {
        case .compensationSucceeded, .compensationFailed: return step.compensate?.action
        default: return step.action == "http.request" ? nil : step.action
        }
    }

    // MARK: - Operators' commands

    /// Cancels a run that has not finished: running steps are abandoned, compensations run, status `CANCELLED`.
    public func cancelRun(_ runID: String, actor: String, reason: String? = nil) async throws {
        try await command(runID, .cancel(actor: actor, reason: reason))
    }

    /// Re-runs a failed run from `fromStep` (default: its failed step), reusing the recorded results before it.
    public func redriveRun(_ runID: String, fromStep: String?, actor: String) async throws {
        try await command(runID, .redrive(actor: actor, fromStep: fromStep))
    }

    func command(_ runID: String, _ input: RunInput) async throws {
        let driver: RunDriver
        if let existing = drivers.withLock({ $0[runID] }) {
            driver = existing
        } else {
            var state = try store.run(runID)
            if state == nil, let end = try? await ledger.lastSequence(), await store.progress.wait(for: end, timeout: configuration.projectionWait) {
                state = try store.run(runID)
            }
            guard let state else { throw EngineError.runNotFound(runID) }
            guard let definition = try catalog.definition(flowID: state.flow_id, version: state.flow_version) else {
                throw EngineError.unavailable("run \(runID) is pinned to \(state.flow_id) v\(state.flow_version), which the read model does not have")
            }
            if let refusal = RunDecider(definition: definition, registry: registry).refusal(state, input) {
                throw EngineError.invalidState(refusal)
            }
            let refusal: String? = await withCheckedContinuation { continuation in
                _ = launch(state: state, definition: definition, resume: !state.status.isTerminal, initial: .command(input) { continuation.resume(returning: $0) })
            }
            if let refusal { throw EngineError.invalidState(refusal) }
            return
        }
        let refusal: String? = await withCheckedContinuation { continuation in
            driver.send(.command(input) { continuation.resume(returning: $0) })
        }
        if let refusal { throw EngineError.invalidState(refusal) }
    }

    /// The run folded from its own subject in the log (the source of truth).
    public func foldFromLog(_ runID: String) async throws -> RunState? {
        var state: RunState?
        for (sequence, message) in try await ledger.read(subject: Subjects.run(runID)) {
            // Read as the projector reads it: what it skips moves the run's position and nothing else.
            switch LogAdmission.admit(subject: message.subject, payload: message.payload, messageID: message.headers["Nats-Msg-Id"]) {
            case .event(let event), .skipped(_, let event?): state = RunState.evolve(state, event, sequence: sequence)
            case .skipped(_, nil), .ignored: break
            }
        }
        return state
    }

    func execute(_ execution: StepExecution, startedAt: Date, _ loop: inout RunLoop) {
        let driver = loop.driver
        let executor = self.executor
        if execution.action != "http.request", let refusal = breakers.refuse(execution.action) {
            driver.send(.input(.stepResult(
                stepID: execution.stepID, attempt: execution.attempt,
                result: .failure(StepError(kind: "circuit_open", message: refusal, retryable: true)), sourceSequence: nil), done: nil))
            return
        }
        loop.executions.removeAll { $0.isCancelled }
        loop.executions.append(Task {
            await executor.execute(execution, startedAt: startedAt) { result in
                driver.send(.input(.stepResult(stepID: execution.stepID, attempt: execution.attempt, result: result, sourceSequence: nil), done: nil))
            }
        })
    }

    func publishOutput(_ output: FlowOutputProduced, _ loop: inout RunLoop) async {
        // Published before (the read model saw it in the log): a run resumed after a crash, however much later
        // than the stream's duplicate window, never sends its reply twice.
        if let sequence = loop.state.output_sequence {
            logger.info("run \(output.run_id): its output is already in the log at \(sequence); not publishing it again")
            return
        }
        let event = CloudEvent(
            id: "\(output.run_id)/output", type: EventType.outputProduced, runid: output.run_id, flowid: output.flow_id,
            flowversion: output.flow_version, correlationid: output.run_id, data: output)
        do {
            let payload = try EventCodec().encode(event)
            _ = try await appendForever(OutgoingMessage(subject: Subjects.outputProduced, payload: payload, messageID: event.id))
        } catch {
            logger.error("run \(output.run_id): could not publish its output: \(error)")
        }
    }

    func schedule(_ at: Date, _ loop: inout RunLoop) {
        if let timer = loop.timer, timer.at <= at { return }
        loop.timer?.task.cancel()
        let driver = loop.driver
        let task = Task {
            let wait = at.timeIntervalSinceNow
            if wait > 0 {
                do { try await Task.sleep(for: .milliseconds(wait.clampedMilliseconds + 1)) } catch { return }
            }
            driver.send(.wake)
        }
        loop.timer = (at, task)
    }
}

extension Engine {
    /// A step's result as the run may record it: an output nested deeper than the log's documents allow is a
    /// failure of the attempt (the event could not be read back otherwise).
    static func checked(_ input: RunInput) -> RunInput {
        guard case .stepResult(let stepID, let attempt, .success(let output), let source) = input,
            output.depth > Limits.stepOutputDepth
        else { return input }
        return .stepResult(
            stepID: stepID, attempt: attempt,
            result: .failure(StepError(
                kind: "output_too_deep", message: "the step's output is nested more than \(Limits.stepOutputDepth) levels deep", retryable: false)),
            sourceSequence: source)
    }

    /// What to record instead of an event the log can never store (larger or deeper than it keeps).
    static func replacement(for body: LedgerEvent.Body, _ problem: UnstorableEvent) -> LedgerEvent.Body? {
        let now = Timestamp.now()
        let too = problem.problem
        func failure(_ what: String, _ kind: String) -> StepError {
            StepError(kind: "\(kind)_\(too)", message: "\(what) cannot be recorded in the log (\(problem.detail)); make it smaller", retryable: false)
        }
        switch body {
        case .stepAttemptStarted(let e):
            return .stepAttemptFailed(StepAttemptFailed(
                step_id: e.step_id, attempt: e.attempt, error: failure("the step's rendered request", "request"),
                started_at: e.started_at, finished_at: now, retry_at: nil))
        case .stepAttemptSucceeded(let e):
            return .stepAttemptFailed(StepAttemptFailed(
                step_id: e.step_id, attempt: e.attempt, error: failure("the step's output", "output"),
                started_at: e.started_at, finished_at: now, retry_at: nil, source_sequence: e.source_sequence))
        case .compensationStarted(let e):
            return .compensationFailed(StepAttemptFailed(
                step_id: e.step_id, attempt: e.attempt, error: failure("the compensation's rendered request", "request"),
                started_at: e.started_at, finished_at: now, retry_at: nil))
        case .compensationSucceeded(let e):
            return .compensationFailed(StepAttemptFailed(
                step_id: e.step_id, attempt: e.attempt, error: failure("the compensation's output", "output"),
                started_at: e.started_at, finished_at: now, retry_at: nil, source_sequence: e.source_sequence))
        case .runSucceeded:
            return .runFailed(FlowRunFailed(error: RunError(
                code: "output_\(too)", message: "the run's rendered output cannot be recorded in the log (\(problem.detail)); make the flow's output smaller")))
        default:
            return nil
        }
    }
}

/// A run that can never start (its subject in the log is taken by something else).
public struct StartRefused: Error, Sendable {
    public var reason: String
}

/// An event the log can never store: `too_large` (over the stream's message size) or `too_deep` (nested deeper
/// than the engine reads back).
struct UnstorableEvent: Error {
    var problem: String
    var detail: String
}

/// The hash a run is pinned to: SHA-256 of the definition's canonical JSON.
public enum DefinitionHash {
    public static func of(_ definition: FlowDefinition) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(definition)) ?? Data()
        return "sha256:" + SHA256.hash(Array(data)).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}
