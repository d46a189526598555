import Foundation
public import LedgerCore
import LedgerNATS
import LedgerProjections
public import Logging
public import Prometheus
public import ServiceLifecycle
public import Synchronization
public import Tracing

/// Settings of the engine.
public struct EngineConfiguration: Sendable {
    /// The durable consumer of the inbound subjects that start runs (chat commands, other services' events).
    public var consumerName = "engine"
    /// The durable consumer of services' answers to the commands steps sent (`<consumerName>-answers`): apart from
    /// the triggers' so that answers reach the runs waiting for them while new triggers wait for room.
    public var answersConsumerName: String { consumerName + "-answers" }
    public var fetchBatch = 256
    /// Runs this worker drives at once, at most: at the limit, new triggers wait in the stream (the triggers'
    /// consumer stops fetching) until runs finish. Services' answers, operators' commands, manual runs, schedules
    /// and the runs a sweep takes over are never held back (they may take the count past it), nor is a trigger
    /// that starts several flows (by up to the room left times the extra flows).
    public var maxRunsInFlight = 10_000
    public var ackWait: Duration = .seconds(30)
    /// How long a decision waits for the read models to reach the log position it is decided at.
    public var projectionWait: Duration = .seconds(5)
    /// How long `discovery.search` results are reused for the same (normalised) query; zero turns the cache off.
    public var discoveryCacheTTL: Duration = .seconds(60)
    /// How many queries the discovery cache holds at most (its bytes are bounded too).
    public var discoveryCacheEntries = 1_000
    /// Subjects other services publish their events on (seed 002): each event there starts the active flows whose
    /// trigger names its type (`--event-subjects`; the stream must capture them).
    public var eventSubjects = [Subjects.events]
    /// Every subject the inbound consumers read.
    public var inboundSubjects: [String] { Subjects.engineInbound + eventSubjects }
    /// The subjects whose messages start runs: the triggers' consumer reads them.
    public var triggerSubjects: [String] { [Subjects.assistantCommandIssued] + eventSubjects }
    /// Circuit breakers per action (and per host for `http.request`).
    public var breakers = CircuitBreakerSettings()
    /// Deliveries of an inbound message whose handling keeps failing before it is recorded and given up.
    public var maxDeliveries = Limits.maxDeliveries
    /// Where `http.request` and `emit` may send beyond the defaults (`--http-allow`, `--emit-allow`).
    public var outbound = OutboundPolicy()
    /// What runs decide at and wait on (a manual clock in tests).
    public var clock: any RunClock = SystemRunClock()
    /// How long a worker may miss its heartbeat before the runs it drives are taken over by another worker.
    public var leaseTTL: Duration = .seconds(5)
    /// This worker's id among the workers sharing the log (default: `<host>-<pid>-<random>`, new each start). An id
    /// must never be used by two live engines, nor reused by a restart: runs are taken over from an id only once
    /// its heartbeat stops.
    public var workerID: String?
    /// The tokens `automation.flow.run` requests are checked against (nil: every request is refused).
    public var tokens: AccessTokens?
    /// Where `{{secrets.NAME}}` values come from (`--secrets FILE`, `LEDGERFLOW_SECRET_<NAME>`).
    public var secrets = SecretStore()
    /// The actions flows may use: the built-in ones, minus `--disable-action`.
    public var registry: ActionRegistry = .builtIn
    /// Where the engine keeps its metrics (default: a registry of its own, see `EngineMetrics`).
    public var metricsRegistry: PrometheusCollectorRegistry?
    /// Records the spans of runs and step attempts (`ledgerflow serve` gives the OTLP exporter's when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set). Nil: no spans are recorded; the W3C trace context still travels.
    public var tracer: (any Tracer)?
    public init() {}
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
    /// What is done with each type of inbound event.
    let inboundHandlers: InboundHandlers = .builtIn
    public let breakers: CircuitBreakers<ContinuousClock>
    let logger: Logger
    let drivers = Mutex<[String: RunDriver]>([:])
    let tasks = Mutex<[String: Task<Void, Never>]>([:])
    /// Set when the drivers are stopped: a driver's next task ends at once instead of waiting for mail.
    let driversStopping = Atomic<Bool>(false)
    /// Set once runs in flight at start have been picked up.
    public let ready = Atomic<Bool>(false)
    /// Runs this process started, and events it appended to runs (for health and tests).
    public let runsStarted = Atomic<Int>(0)
    public let eventsAppended = Atomic<Int>(0)
    public let messagesRejected = Atomic<Int>(0)
    /// Inbound deliveries handed back for a later try (a transient failure).
    public let inboundRetries = Atomic<Int>(0)
    /// Fault injection for tests: an outcome to use instead of handling an inbound message (never set in production).
    let inboundFailpoint = LockedHook<@Sendable (NATSMessage) -> InboundOutcome?>()
    /// This worker's lease: its id and heartbeat, and its view of the other workers'.
    public let leases: WorkerLeases
    /// Runs this worker took over from a worker that stopped (or from none).
    public let runsClaimed = Atomic<Int>(0)
    /// What `GET /metrics` shows: runs, step attempts, inbound refusals, the read models' progress.
    public let metrics: EngineMetrics
    /// The scheduler's leader lease: the schedules fire on its holder only.
    public let schedulerLease: SchedulerLease
    /// The last firing this process decided per flow (a shortcut: the log fences every firing anyway).
    let scheduleCursors = Mutex<[String: Int64]>([:])
    /// The spans of runs and attempts (`RunTracing`).
    let tracing: RunTracing

    /// This worker's id, recorded in the runs it starts or claims.
    public var workerID: String { leases.workerID }

    public init(
        ledger: Ledger, store: ReadModelStore, configuration: EngineConfiguration = EngineConfiguration(),
        logger: Logger
    ) {
        self.ledger = ledger
        self.store = store
        self.configuration = configuration
        self.registry = configuration.registry
        self.catalog = FlowCatalog(store: store, registry: configuration.registry)
        self.breakers = CircuitBreakers(settings: configuration.breakers)
        let metrics = EngineMetrics(registry: configuration.metricsRegistry ?? PrometheusCollectorRegistry())
        self.metrics = metrics
        metrics.limitRunsInFlight(configuration.maxRunsInFlight)
        self.executor = StepExecutor(
            ledger: ledger, registry: configuration.registry, discoveryCacheTTL: configuration.discoveryCacheTTL,
            discoveryCacheEntries: configuration.discoveryCacheEntries, breakers: breakers,
            outbound: configuration.outbound, secrets: configuration.secrets, metrics: metrics,
            eventSubjects: configuration.eventSubjects, logger: logger)
        self.logger = logger
        self.tracing = RunTracing(tracer: configuration.tracer)
        self.leases = WorkerLeases(
            ledger: ledger, workerID: configuration.workerID, ttl: configuration.leaseTTL, logger: logger)
        self.schedulerLease = SchedulerLease(
            ledger: ledger, holder: leases.workerID, ttl: configuration.leaseTTL, logger: logger)
        store.appliedObserver.function = { [weak self] batch in self?.observe(batch) }
    }

    /// Runs currently driven by this process.
    public var activeRunCount: Int { drivers.withLock { $0.count } }
    /// The most runs this process drove at once since it started.
    public let runsInFlightPeak = Atomic<Int>(0)

    // MARK: - Service

    public func run() async throws {
        let heartbeat = Task { await self.leases.keepAlive() }
        defer { heartbeat.cancel() }
        guard let requests = await cancelWhenGracefulShutdown({ await self.start() }) else { return }
        let answering = Task { await self.answerRunRequests(requests) }
        let sweeping = Task { await self.keepSweeping() }
        let scheduling = Task { await self.keepScheduling() }
        defer {
            requests.stop()
            answering.cancel()
            sweeping.cancel()
            scheduling.cancel()
        }
        // On shutdown the sweeps stop first (no run is claimed on the way out) and the runs' drivers stop at once,
        // so an inbound handler waiting on a driver (NATS away, its append retrying) is answered "not applied" and
        // the consumer can end; the message is delivered again after the next start.
        await withGracefulShutdownHandler {
            await cancelWhenGracefulShutdown {
                await self.consumeInbound()
            }
        } onGracefulShutdown: {
            scheduling.cancel()
            sweeping.cancel()
            answering.cancel()
            self.stopDrivers()
        }
        sweeping.cancel()
        stopDrivers()
        await executor.shutdown()
    }

    /// Cancels every run's driver (each leaves its run as the log has it).
    func stopDrivers() {
        driversStopping.store(true, ordering: .releasing)
        let running = tasks.withLock { Array($0.values) }
        for task in running { task.cancel() }
    }

    /// Recovers and subscribes to run requests; a failure (NATS away) is retried with backoff, never stopping the
    /// process. Nil when the engine is stopped meanwhile.
    func start() async -> IncomingRequests? {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await recover()
                return try ledger.requests(on: Subjects.flowRunRequest, queue: "ledgerflow-engine")
            } catch {
                failures += 1
                let delay = Self.backoff(failures)
                logger.error(
                    "engine could not start; trying again",
                    metadata: [LogKey.error: "\(error)", LogKey.delay: "\(delay)"])
                do { try await Task.sleep(for: delay) } catch { return nil }
            }
        }
        return nil
    }

    /// Waits for the read models to reach the end of the log as it is now, and picks up the unfinished runs no live
    /// worker drives (see `sweep`); later sweeps pick up the rest as the models and the other workers' leases move.
    public func recover() async throws {
        let end = try await ledger.lastSequence()
        if !(await store.progress.wait(for: end, timeout: .seconds(120))) {
            logger.warning(
                "the read models did not reach the end of the log in time; recovering from what they have",
                metadata: [LogKey.sequence: "\(end)"])
        }
        _ = await leases.beat()
        await sweep()
        ready.store(true, ordering: .releasing)
    }

    /// Hands a service's answer (seen in the log at `sequence`) to its run, wherever it is driven, and returns once
    /// the run has applied it (or ignored it). A finished run is driven again only for an answer that changes it (the
    /// late effect of an abandoned attempt: recorded, and undone when the step has a compensation); the worker that
    /// received that answer claims the run for it. False when the run is unknown, or finished and the answer changes
    /// nothing (the answer stays in the log). Throws when the log or the read model cannot be read.
    func deliverAnswer(_ input: RunCommand, runID: String, seenAt sequence: UInt64) async throws -> Bool {
        if let driver = drivers.withLock({ $0[runID] }) {
            try await Self.handAnswer(input) { driver.send($0) }
            return true
        }
        // The answer is decided on the run as of the answer's place in the log (its command and the attempt that
        // sent it come before it): the read models once they reach it, else the run's own subject.
        let caughtUp =
            sequence <= 1 || store.progress.position >= sequence - 1
            ? true : await store.progress.wait(for: sequence - 1, timeout: configuration.projectionWait)
        let current = caughtUp ? try store.run(runID) : try await foldFromLog(runID)
        guard var state = current, let definition = try pinnedDefinition(of: state) else { return false }
        if state.isSettled {
            let decider = RunDecider(definition: definition, registry: registry)
            guard !decider.decide(state, Self.checked(input), now: configuration.clock.now).isEmpty else {
                return false
            }
            if !drives(state),
                let mine = try await claim(state, definition: definition, reason: "a late answer changes the run")
            {
                state = mine
            }
        }
        _ = try await deliver(input, to: state, definition: definition, command: false)
        return true
    }

    /// The definition a run is pinned to; nil (logged) when the read model does not have it or it no longer
    /// validates, which no retry can change. Throws only when the read model cannot be read.
    func pinnedDefinition(of state: RunState) throws -> FlowDefinition? {
        do {
            guard let definition = try catalog.definition(flowID: state.flow_id, version: state.flow_version) else {
                logger.error(
                    "run is pinned to a flow version the read model does not have", metadata: state.logMetadata)
                return nil
            }
            return definition
        } catch let error as EngineError {
            logger.error(
                "run is pinned to a flow version that no longer validates",
                metadata: state.logMetadata.merging([LogKey.error: "\(error)"]) { $1 })
            return nil
        }
    }

    // MARK: - Operators' commands

    /// Cancels a run that has not finished: running steps are abandoned, compensations run, status `CANCELLED`.
    public func cancelRun(_ runID: String, actor: ActorRef, reason: String? = nil) async throws {
        try await command(runID, .cancel(actor: actor.id, reason: reason, actorType: actor.type))
    }

    /// Re-runs a failed run from `fromStep` (default: its failed step), reusing the recorded results before it.
    public func redriveRun(_ runID: String, fromStep: String?, actor: ActorRef) async throws {
        try await command(runID, .redrive(actor: actor.id, fromStep: fromStep, actorType: actor.type))
    }

    /// A person's write (a command, a manual run) is refused at once while the log is unreachable: answered 503
    /// with `Retry-After` instead of waiting on appends that retry until NATS is back.
    func requireReachableLog() throws {
        guard ledger.isConnected else {
            throw EngineError.unavailable(
                "NATS at \(Ledger.displayURL(ledger.url)) is not reachable right now (reconnecting); nothing was recorded, try again shortly"
            )
        }
    }

    func command(_ runID: String, _ input: RunCommand) async throws {
        try requireReachableLog()
        for _ in 0..<3 {
            let refusal: String?
            if let driver = drivers.withLock({ $0[runID] }) {
                refusal = await Self.handCommand(input, post: { driver.send($0) })
            } else {
                refusal = try await commandUndriven(runID, input)
            }
            switch refusal {
            case nil: return
            case RunDriver.stopped?: continue  // the driver stopped first: decide again on the run as it is now
            case RunDriver.notRecorded?:
                throw EngineError.unavailable(
                    "run \(runID): the command could not be recorded (NATS away, or stopping)")
            case let refusal?: throw EngineError.invalidState(refusal)
            }
        }
        throw EngineError.unavailable("run \(runID) kept changing hands while the command was decided")
    }

    /// A command for a run this worker has no driver for: decided on the run as the log has it.
    func commandUndriven(_ runID: String, _ input: RunCommand) async throws -> String? {
        // Not driven here: decided on the run as the log has it. The read model may not have the run's last events
        // yet (it has just finished, or another worker drove it); a command decided on that would be refused for a
        // reason that no longer holds.
        let modelled = try store.run(runID)
        var fromLog: RunState?
        do {
            fromLog = try await foldFromLog(runID)
        } catch {
            logger.warning(
                "could not read the run from the log; deciding on the read model",
                metadata: [LogKey.runID: "\(runID)", LogKey.error: "\(error)"])
        }
        guard var state = fromLog ?? modelled else { throw EngineError.runNotFound(runID) }
        if state.output_sequence == nil { state.output_sequence = modelled?.output_sequence }
        guard let definition = try catalog.definition(flowID: state.flow_id, version: state.flow_version) else {
            throw EngineError.unavailable(
                "run \(runID) is pinned to \(state.flow_id) v\(state.flow_version), which the read model does not have"
            )
        }
        // A finished run has no worker driving it: whoever redrives it claims it first (only when the redrive is
        // accepted), and drives it from there.
        let accepted = RunDecider(definition: definition, registry: registry)
            .decide(state, input, now: configuration.clock.now)
            .contains { if case .append = $0 { true } else { false } }
        if case .redrive(let actor, _, _) = input, state.isSettled, accepted, !drives(state) {
            var mine: RunState?
            for _ in 0..<5 where mine == nil {
                mine = try await claim(state, definition: definition, reason: "redriven by \(actor)")
                if mine == nil { state = try await foldFromLog(runID) ?? state }
            }
            guard let mine else {
                throw EngineError.unavailable("run \(runID) kept changing while it was redriven; try again")
            }
            state = mine
        }
        return try await deliver(input, to: state, definition: definition, command: true)
    }

    /// The run folded from its own subject in the log (the source of truth).
    public func foldFromLog(_ runID: String) async throws -> RunState? {
        try await foldRunFromLog(runID)?.state
    }

    /// The run folded from its own subject in the log, and the link of its last message (hashed once, at the end),
    /// so the next append carries its hash without reading it again.
    public func foldRunFromLog(_ runID: String) async throws -> (state: RunState, head: ChainLink)? {
        var state: RunState?
        var last: LogMessage?
        for try await message in ledger.messages(subject: Subjects.run(runID)) {
            last = message
            // Read as the projector reads it: what it skips moves the run's position and nothing else.
            switch LogAdmission.admit(subject: message.subject, payload: message.payload, messageID: message.messageID)
            {
            case .event(let event), .skipped(_, let event?):
                state = RunState.evolve(state, event, sequence: message.sequence)
            case .skipped(_, nil), .ignored: break
            }
        }
        guard let state, let last else { return nil }
        return (state, ChainLink(sequence: last.sequence, payload: last.payload))
    }
}
