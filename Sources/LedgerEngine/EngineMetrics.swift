import CoreMetrics
import Foundation
import LedgerCore
public import LedgerProjections
public import Prometheus
import Synchronization

/// The engine's metrics (swift-metrics over swift-prometheus), kept in a Prometheus registry of the engine's own, so
/// two engines in one process (tests, a second worker) never count into each other's and nothing here depends on
/// the process-wide `MetricsSystem`. `GET /metrics` renders `registry`; `ledgerflow serve` also bootstraps the
/// global `MetricsSystem` with `factory`, so metrics of the libraries land in the same page. Names and labels are
/// listed in README.md ("Metrics"); every label value comes from a bounded set (registered flows, registered
/// actions, fixed outcome and status words), never from a run.
public final class EngineMetrics: Sendable {
    /// Where the engine's metrics are kept, and what `GET /metrics` renders.
    public let registry: PrometheusCollectorRegistry
    /// Makes swift-metrics metrics in `registry`.
    public let factory: PrometheusMetricsFactory

    /// Metric names (the README lists them with their labels).
    public enum Name {
        public static let runsStarted = "ledgerflow_runs_started_total"
        public static let runsFinished = "ledgerflow_runs_finished_total"
        public static let stepAttempts = "ledgerflow_step_attempts_total"
        public static let stepDuration = "ledgerflow_step_duration_seconds"
        public static let compensationAttempts = "ledgerflow_compensation_attempts_total"
        public static let eventsAppended = "ledgerflow_run_events_appended_total"
        public static let inboundRejected = "ledgerflow_inbound_rejected_total"
        public static let inboundRetries = "ledgerflow_inbound_retries_total"
        public static let inboundUnhandled = "ledgerflow_inbound_unhandled_total"
        public static let discoveryCache = "ledgerflow_discovery_cache_total"
        public static let projectionSkipped = "ledgerflow_projection_skipped_total"
        public static let projectionStatesReadBack = "ledgerflow_projection_states_read_back_total"
        public static let eventsEncoded = "ledgerflow_events_encoded_total"
        public static let eventsDecoded = "ledgerflow_events_decoded_total"
        public static let projectionCheckpoint = "ledgerflow_projection_checkpoint"
        public static let projectionLag = "ledgerflow_projection_lag"
        public static let logLastSequence = "ledgerflow_log_last_sequence"
        public static let runsInMemory = "ledgerflow_runs_in_memory"
        public static let runsInFlightLimit = "ledgerflow_runs_in_flight_limit"
        public static let runLimitReached = "ledgerflow_run_limit_reached_total"
        public static let runLimitWait = "ledgerflow_run_limit_wait_seconds_total"
        public static let natsConnected = "ledgerflow_nats_connected"
        public static let httpRequests = "ledgerflow_http_requests_total"
        public static let scheduleSkipped = "ledgerflow_schedule_firings_skipped_total"
        public static let scheduleStarted = "ledgerflow_schedule_firings_started_total"
        public static let scheduleLateness = "ledgerflow_schedule_firing_late_seconds_total"
    }

    /// Buckets of the step latency histogram: from a local step (milliseconds) to a service answering within the
    /// longest step timeout.
    static let stepBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(3600),
    ]

    /// The counters of one flow, made the first time the flow is seen (label values formatted once).
    struct FlowCounters: Sendable {
        let started: CoreMetrics.Counter
        let succeeded: CoreMetrics.Counter
        let failed: CoreMetrics.Counter
        let cancelled: CoreMetrics.Counter
    }

    /// The attempt counters (one per outcome) and the latency histogram of one action.
    struct ActionMetrics: Sendable {
        let outcomes: [StepOutcome: CoreMetrics.Counter]
        let duration: CoreMetrics.Timer?
    }

    struct ActionKey: Hashable {
        var action: String
        var compensation: Bool
    }

    /// How a step's (or a compensation's) attempt ended, as counted.
    enum StepOutcome: String, Sendable, CaseIterable {
        case succeeded
        case failed
        case timedOut = "timed_out"
        case circuitOpen = "circuit_open"
        case cancelled

        init(_ kind: StepErrorKind) {
            switch kind {
            case .timeout: self = .timedOut
            case .circuitOpen: self = .circuitOpen
            case .cancelled: self = .cancelled
            default: self = .failed
            }
        }
    }

    private let flows = Mutex<[String: FlowCounters]>([:])
    /// By action, and whether the attempts are compensations.
    private let actions = Mutex<[ActionKey: ActionMetrics]>([:])
    let eventsAppended: CoreMetrics.Counter
    let inboundRetries: CoreMetrics.Counter
    let inboundUnhandled: CoreMetrics.Counter
    let discoveryHits: CoreMetrics.Counter
    let discoveryMisses: CoreMetrics.Counter
    let inboundRejected: [InboundRejectClass: CoreMetrics.Counter]
    /// Counters the store keeps the counts of (across restarts, or since it opened); scrapes add the rest.
    private let projectionSkipped: CountFollower
    private let projectionStatesReadBack: CountFollower
    private let eventsEncoded: CountFollower
    private let eventsDecoded: CountFollower
    private let projectionCheckpoint: CoreMetrics.Gauge
    private let projectionLag: CoreMetrics.Gauge
    private let logLastSequence: CoreMetrics.Gauge
    private let runsInMemory: CoreMetrics.Gauge
    private let natsConnected: CoreMetrics.Gauge
    private let runsInFlightLimit: CoreMetrics.Gauge
    private let runLimitReached: CoreMetrics.Counter
    private let runLimitWait: CoreMetrics.FloatingPointCounter

    /// Metrics kept in `registry` (a new one by default).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Name.stepDuration] = Self.stepBuckets
        self.factory = factory
        eventsAppended = CoreMetrics.Counter(label: Name.eventsAppended, factory: factory)
        inboundRetries = CoreMetrics.Counter(label: Name.inboundRetries, factory: factory)
        inboundUnhandled = CoreMetrics.Counter(label: Name.inboundUnhandled, factory: factory)
        discoveryHits = CoreMetrics.Counter(
            label: Name.discoveryCache, dimensions: [("result", "hit")], factory: factory)
        discoveryMisses = CoreMetrics.Counter(
            label: Name.discoveryCache, dimensions: [("result", "miss")], factory: factory)
        var rejected: [InboundRejectClass: CoreMetrics.Counter] = [:]
        for reason in InboundRejectClass.allCases {
            rejected[reason] = CoreMetrics.Counter(
                label: Name.inboundRejected, dimensions: [("reason", reason.rawValue)], factory: factory)
        }
        inboundRejected = rejected
        projectionSkipped = CountFollower(CoreMetrics.Counter(label: Name.projectionSkipped, factory: factory))
        projectionStatesReadBack = CountFollower(
            CoreMetrics.Counter(label: Name.projectionStatesReadBack, factory: factory))
        eventsEncoded = CountFollower(CoreMetrics.Counter(label: Name.eventsEncoded, factory: factory))
        eventsDecoded = CountFollower(CoreMetrics.Counter(label: Name.eventsDecoded, factory: factory))
        projectionCheckpoint = CoreMetrics.Gauge(label: Name.projectionCheckpoint, factory: factory)
        projectionLag = CoreMetrics.Gauge(label: Name.projectionLag, factory: factory)
        logLastSequence = CoreMetrics.Gauge(label: Name.logLastSequence, factory: factory)
        runsInMemory = CoreMetrics.Gauge(label: Name.runsInMemory, factory: factory)
        natsConnected = CoreMetrics.Gauge(label: Name.natsConnected, factory: factory)
        runsInFlightLimit = CoreMetrics.Gauge(label: Name.runsInFlightLimit, factory: factory)
        runLimitReached = CoreMetrics.Counter(label: Name.runLimitReached, factory: factory)
        runLimitWait = CoreMetrics.FloatingPointCounter(label: Name.runLimitWait, factory: factory)
    }

    /// The Prometheus text exposition of every metric in `registry`.
    public func render() -> [UInt8] { registry.emitToBuffer() }

    // MARK: - Counted where it happens

    func flow(_ flowID: String) -> FlowCounters {
        flows.withLock { flows in
            if let known = flows[flowID] { return known }
            let factory = self.factory
            func finished(_ status: String) -> CoreMetrics.Counter {
                CoreMetrics.Counter(
                    label: Name.runsFinished, dimensions: [("flow_id", flowID), ("status", status)], factory: factory)
            }
            let made = FlowCounters(
                started: CoreMetrics.Counter(
                    label: Name.runsStarted, dimensions: [("flow_id", flowID)], factory: factory),
                succeeded: finished(RunStatus.succeeded.rawValue), failed: finished(RunStatus.failed.rawValue),
                cancelled: finished(RunStatus.cancelled.rawValue))
            flows[flowID] = made
            return made
        }
    }

    func action(_ action: String, compensation: Bool) -> ActionMetrics {
        let key = ActionKey(action: action, compensation: compensation)
        return actions.withLock { known in
            if let metrics = known[key] { return metrics }
            let factory = self.factory
            var outcomes: [StepOutcome: CoreMetrics.Counter] = [:]
            for outcome in StepOutcome.allCases {
                outcomes[outcome] = CoreMetrics.Counter(
                    label: compensation ? Name.compensationAttempts : Name.stepAttempts,
                    dimensions: [("action", action), ("outcome", outcome.rawValue)], factory: factory)
            }
            let duration =
                compensation
                ? nil : CoreMetrics.Timer(label: Name.stepDuration, dimensions: [("action", action)], factory: factory)
            let made = ActionMetrics(outcomes: outcomes, duration: duration)
            known[key] = made
            return made
        }
    }

    /// What `sampleSchedules` already added to the schedule counters, by flow.
    private struct ScheduleSeen {
        var skipped: [String: Int] = [:]
        var started = 0
        var lateMillis: Int64 = 0
    }
    private let schedulesSeen = Mutex<[String: ScheduleSeen]>([:])

    /// A run this process started.
    func runStarted(flowID: String) {
        flow(flowID).started.increment()
    }

    /// An event this process appended to a run of `definition`: counts the run's end and the steps' attempts.
    func appended(_ body: LedgerEvent.Body, flowID: String, definition: FlowDefinition) {
        eventsAppended.increment()
        switch body {
        case .runSucceeded: flow(flowID).succeeded.increment()
        case .runFailed: flow(flowID).failed.increment()
        case .runCancelled: flow(flowID).cancelled.increment()
        case .stepAttemptSucceeded(let e):
            attempt(e.step_id, .succeeded, e.started_at, e.finished_at, definition, compensation: false)
        case .stepAttemptFailed(let e):
            attempt(e.step_id, StepOutcome(e.error.kind), e.started_at, e.finished_at, definition, compensation: false)
        case .compensationSucceeded(let e):
            attempt(e.step_id, .succeeded, e.started_at, e.finished_at, definition, compensation: true)
        case .compensationFailed(let e):
            attempt(e.step_id, StepOutcome(e.error.kind), e.started_at, e.finished_at, definition, compensation: true)
        default:
            break
        }
    }

    private func attempt(
        _ stepID: String, _ outcome: StepOutcome, _ startedAt: String, _ finishedAt: String,
        _ definition: FlowDefinition, compensation: Bool
    ) {
        guard let step = definition.step(stepID),
            let name = compensation ? step.compensate?.action : step.action
        else { return }
        let metrics = action(name, compensation: compensation)
        metrics.outcomes[outcome]?.increment()
        if let duration = metrics.duration, let start = Timestamp.parse(startedAt),
            let end = Timestamp.parse(finishedAt)
        {
            // At most a year (timestamps out of order or absurdly far apart are not worth a trap).
            let seconds = min(max(0, end.timeIntervalSince(start)), 86_400 * 365)
            duration.recordNanoseconds(Int64(seconds * 1_000_000_000))
        }
    }

    /// An inbound delivery handed back to be tried again.
    func retried() {
        inboundRetries.increment()
    }

    /// An inbound message refused and recorded, by why.
    func rejected(_ reason: InboundRejectClass) {
        inboundRejected[reason]?.increment()
    }

    /// The limit of runs in flight this worker was started with.
    func limitRunsInFlight(_ limit: Int) { runsInFlightLimit.record(limit) }

    /// The triggers' consumer found this worker at its limit of runs in flight, and stopped fetching.
    func reachedRunLimit() { runLimitReached.increment() }

    /// How long the triggers' consumer waited for room under the limit of runs in flight.
    func waitedForRoom(_ waited: Duration) {
        let (seconds, attoseconds) = waited.components
        runLimitWait.increment(by: Double(seconds) + Double(attoseconds) / 1e18)
    }

    /// A valid inbound event no handler took (recorded as `InboundEventUnhandled`).
    func unhandled() { inboundUnhandled.increment() }

    /// A `discovery.search` answered from the cache (`hit`) or by the service (`miss`).
    func discoveryLookup(hit: Bool) { (hit ? discoveryHits : discoveryMisses).increment() }

    // MARK: - Sampled when scraped

    /// Moves the schedule counters up to the counts of the schedules read model (firings skipped by flow and class,
    /// started, lateness): the totals of every scheduler there was, the same on every process whose read models
    /// have reached the same log position, and kept across restarts. Every class of a scheduled flow is listed
    /// (zero until one is skipped). A count never goes down here (a read model rebuilt in place starts again from
    /// what it already reported).
    public func sampleSchedules(_ states: [ScheduleState]) {
        let factory = self.factory
        schedulesSeen.withLock { seen in
            for state in states {
                let flowID = state.flow_id
                var known = seen[flowID] ?? ScheduleSeen()
                for skipClass in Set(ScheduleFiring.SkipClass.all).union(state.skipped.keys) {
                    let counter = CoreMetrics.Counter(
                        label: Name.scheduleSkipped, dimensions: [("flow_id", flowID), ("class", skipClass)],
                        factory: factory)
                    let total = state.skipped[skipClass] ?? 0
                    if total > known.skipped[skipClass] ?? 0 {
                        counter.increment(by: total - (known.skipped[skipClass] ?? 0))
                        known.skipped[skipClass] = total
                    }
                }
                let started = CoreMetrics.Counter(
                    label: Name.scheduleStarted, dimensions: [("flow_id", flowID)], factory: factory)
                if state.started > known.started {
                    started.increment(by: state.started - known.started)
                    known.started = state.started
                }
                let late = CoreMetrics.FloatingPointCounter(
                    label: Name.scheduleLateness, dimensions: [("flow_id", flowID)], factory: factory)
                if let total = state.late_ms_total, total > known.lateMillis {
                    late.increment(by: Double(total - known.lateMillis) / 1000)
                    known.lateMillis = total
                }
                seen[flowID] = known
            }
        }
    }

    /// Sets the gauges (and the counters kept elsewhere: skipped messages, states read back, events coded) from what the engine,
    /// the read models and the log report now; `lastSequence` nil (the log unreachable) leaves the log's gauges as
    /// they were.
    public func sample(
        runsInMemory: Int, checkpoint: UInt64, skipped: Int, statesReadBack: Int, lastSequence: UInt64?,
        natsConnected: Bool
    ) {
        self.runsInMemory.record(runsInMemory)
        projectionCheckpoint.record(checkpoint)
        self.natsConnected.record(natsConnected ? 1 : 0)
        if let lastSequence {
            logLastSequence.record(lastSequence)
            projectionLag.record(lastSequence > checkpoint ? lastSequence - checkpoint : 0)
        }
        projectionSkipped.follow(skipped)
        projectionStatesReadBack.follow(statesReadBack)
        eventsEncoded.follow(EventCoding.encoded)
        eventsDecoded.follow(EventCoding.decoded)
    }
}

/// A counter that follows a count kept elsewhere (the store's): moved up to it, once per increase even when two
/// scrapes race; a count that went down (a store opened again) adds nothing.
final class CountFollower: Sendable {
    private let counter: CoreMetrics.Counter
    /// The count already added to `counter`.
    private let seen = Atomic<Int>(0)

    init(_ counter: CoreMetrics.Counter) { self.counter = counter }

    func follow(_ count: Int) {
        var seen = self.seen.load(ordering: .relaxed)
        while count > seen {
            let (exchanged, original) = self.seen.compareExchange(expected: seen, desired: count, ordering: .relaxed)
            if exchanged {
                counter.increment(by: count - seen)
                return
            }
            seen = original
        }
    }
}

/// Why an inbound message was refused, as counted (the reason itself is recorded in the log).
public enum InboundRejectClass: String, Sendable, CaseIterable {
    /// It cannot be handled: not a CloudEvent, a type nobody handles, fields missing or invalid, or its handler
    /// refused it.
    case refused
    /// Delivered more times than allowed without an answer (the engine stopped each time while handling it).
    case deliveryLimit = "delivery_limit"
    /// Its handling kept failing for a reason that may pass, until the deliveries ran out.
    case retriesExhausted = "retries_exhausted"
}
