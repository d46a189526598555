/// A flow definition (SPEC §5). Field names are the contract.
public struct FlowDefinition: Codable, Sendable, Equatable {
    public var id: String
    public var name: String?
    public var description: String?
    public var trigger: FlowTrigger?
    public var run_as: RunAs?
    public var inputs: [String: InputSpec]?
    public var defaults: StepDefaults?
    public var steps: [StepDefinition]
    public var output: JSONValue?
    /// The whole run's deadline, in seconds (Ledgerflow's addition to SPEC §5).
    public var run_timeout_sec: Double?

    public init(
        id: String, name: String? = nil, trigger: FlowTrigger? = nil, run_as: RunAs? = nil,
        inputs: [String: InputSpec]? = nil, defaults: StepDefaults? = nil, steps: [StepDefinition],
        output: JSONValue? = nil
    ) {
        self.id = id
        self.name = name
        self.trigger = trigger
        self.run_as = run_as
        self.inputs = inputs
        self.defaults = defaults
        self.steps = steps
        self.output = output
    }

    public func step(_ id: String) -> StepDefinition? { steps.first { $0.id == id } }
}

/// On whose behalf a flow's steps act (`run_as`).
public enum RunAs: String, Codable, Sendable, CaseIterable {
    /// The triggering user (the default).
    case user
    /// The engine's own credentials.
    case service
}

/// What starts a flow: an event (optionally with an intent and matches), a schedule, or a person.
public struct FlowTrigger: Codable, Sendable, Equatable {
    public var event: String?
    public var intent: String?
    /// Further conditions on the event: `{"data.path": value}`.
    public var match: [String: JSONValue]?
    public var cron: String?
    public var timezone: String?
    public var interval: String?
    public var manual: Bool?
    /// A schedule's overlap policy: `skip` (the default), `buffer_one`, `allow_all`, `cancel_other`.
    public var overlap: String?
    /// How far back after downtime a schedule's missed firings still run (default `1m`); older ones are recorded as
    /// skipped (`missed_catchup_window`).
    public var catchup_window: String?
    /// A schedule's jitter: each firing starts up to this much later (a fixed share per firing, the same on every
    /// scheduler).
    public var jitter: String?
    /// The user a `run_as: user` flow on a schedule acts for (its delegated user): required for such flows.
    public var on_behalf_of: String?

    public init(event: String? = nil, intent: String? = nil, match: [String: JSONValue]? = nil) {
        self.event = event
        self.intent = intent
        self.match = match
    }

    /// Whether the trigger is a schedule (cron or interval).
    public var isSchedule: Bool { cron != nil || interval != nil }

    /// The overlap policy (`skip` when absent or unknown; validation refuses unknown ones).
    public var overlapPolicy: OverlapPolicy { overlap.flatMap(OverlapPolicy.init(rawValue:)) ?? .skip }

    /// Whether an inbound event of `type` with `data` starts this flow.
    public func matches(type: String, data: JSONValue) -> Bool {
        guard let event, event == type else { return false }
        if let intent, data["intent"]?.stringValue != intent { return false }
        for (path, expected) in match ?? [:] {
            let relative = path.hasPrefix("data.") ? String(path.dropFirst(5)) : path
            if data[path: relative] != expected { return false }
        }
        return true
    }
}

/// What a schedule does with a firing while its previous run has not finished.
public enum OverlapPolicy: String, Codable, Sendable, CaseIterable {
    /// The firing is skipped and recorded (`skip_overlap`).
    case skip
    /// One firing waits and starts when the running one ends; further ones are skipped.
    case buffer_one
    /// Every firing starts.
    case allow_all
    /// The running run is cancelled and the firing starts.
    case cancel_other
}

/// One declared input of a flow: its type, whether it is required, its default.
public struct InputSpec: Codable, Sendable, Equatable {
    /// `string`, `number`, `integer`, `boolean`, `object`, `array` or `any`.
    public var type: String?
    public var required: Bool?
    public var `default`: JSONValue?
    public var description: String?
}

/// How a step is retried: attempts, backoff and which error kinds are never retried.
public struct RetryPolicy: Codable, Sendable, Equatable {
    /// How the delay between attempts grows.
    public enum Backoff: String, Codable, Sendable, CaseIterable {
        /// Doubles after each attempt, from `initial_ms` up to `max_ms` (the default).
        case exponential
        /// Always `initial_ms`.
        case fixed
    }

    public var max_attempts: Int?
    public var backoff: Backoff?
    public var initial_ms: Int?
    public var max_ms: Int?
    /// Full jitter on each delay (default true).
    public var jitter: Bool?
    /// Error kinds never retried (besides errors that say they are not retryable).
    public var non_retryable: [StepErrorKind]?

    public init(
        max_attempts: Int? = nil, backoff: Backoff? = nil, initial_ms: Int? = nil, max_ms: Int? = nil,
        jitter: Bool? = nil,
        non_retryable: [StepErrorKind]? = nil
    ) {
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.initial_ms = initial_ms
        self.max_ms = max_ms
        self.jitter = jitter
        self.non_retryable = non_retryable
    }

    /// The delay before attempt `attempt + 1`, given `random` in 0..<1 for the jitter. Safe for any stored values
    /// (policies in old log entries were not bounded): delays are clamped to 0...`Limits.retryDelayMillis`,
    /// `random` to 0...1 (NaN counts as 0), and any `attempt` works.
    public func delayMillis(after attempt: Int, random: Double) -> Int {
        let limit = Double(Limits.retryDelayMillis)
        let initial = min(max(Double(initial_ms ?? 200), 0), limit)
        let cap = min(max(Double(max_ms ?? 30_000), 0), limit)
        let base = backoff == .fixed ? initial : initial * pow2(attempt > Int.min ? attempt - 1 : 0)
        let bounded = min(cap, base)
        guard jitter ?? true else { return Int(bounded) }
        // "Equal jitter": half fixed, half random, so a retry never fires at once.
        let r = random.isNaN ? 0 : min(max(random, 0), 1)
        return Int(bounded / 2 + bounded / 2 * r)
    }

    private func pow2(_ n: Int) -> Double {
        var v = 1.0
        for _ in 0..<max(0, min(n, 60)) { v *= 2 }
        return v
    }
}

/// The retry policy and timeout of steps that do not set their own.
public struct StepDefaults: Codable, Sendable, Equatable {
    public var retry: RetryPolicy?
    public var timeout_sec: Double?
    public init(retry: RetryPolicy? = nil, timeout_sec: Double? = nil) {
        self.retry = retry
        self.timeout_sec = timeout_sec
    }
}

/// How a completed step is undone when the run fails or is cancelled: an action and its `with`.
public struct CompensationDefinition: Codable, Sendable, Equatable {
    public var action: String
    public var with: JSONValue?
    public init(action: String, with: JSONValue? = nil) {
        self.action = action
        self.with = with
    }
}

/// One step of a flow: an action, its `with`, dependencies, condition, retry, timeout and compensation.
public struct StepDefinition: Codable, Sendable, Equatable {
    public var id: String
    public var action: String
    public var with: JSONValue?
    public var depends_on: [String]?
    public var when: String?
    public var retry: RetryPolicy?
    public var timeout_sec: Double?
    public var compensate: CompensationDefinition?

    public init(
        id: String, action: String, with: JSONValue? = nil, depends_on: [String]? = nil, when: String? = nil,
        retry: RetryPolicy? = nil, timeout_sec: Double? = nil, compensate: CompensationDefinition? = nil
    ) {
        self.id = id
        self.action = action
        self.with = with
        self.depends_on = depends_on
        self.when = when
        self.retry = retry
        self.timeout_sec = timeout_sec
        self.compensate = compensate
    }

    public var dependencies: [String] { depends_on ?? [] }
}

/// How an action is carried out.
public enum ActionKind: Sendable, Equatable {
    /// Computed inside the engine from the rendered `with` (no side effect).
    case local
    /// A command published on `subject`, answered by another service on an event subject.
    case command(subject: String, type: String)
    /// A synchronous request/reply on `subject`.
    case request(subject: String)
    /// A side effect performed by the engine itself (HTTP, publishing an event).
    case effect
    /// Waits (`delay`).
    case timer
}

/// What the engine knows about an action: how it runs and what its `with` needs.
public struct ActionSpec: Sendable {
    public var name: String
    public var kind: ActionKind
    public var required: [String]
    /// Whether a dry run must simulate it instead of calling out.
    public var sideEffect: Bool

    public init(name: String, kind: ActionKind, required: [String] = [], sideEffect: Bool) {
        self.name = name
        self.kind = kind
        self.required = required
        self.sideEffect = sideEffect
    }
}

/// The actions a definition may name.
public struct ActionRegistry: Sendable {
    public private(set) var actions: [String: ActionSpec]

    public init(_ actions: [ActionSpec]) {
        self.actions = Dictionary(actions.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }

    public subscript(name: String) -> ActionSpec? { actions[name] }

    /// This registry without the actions named (`--disable-action`): flows that use them are marked broken.
    public func without(_ names: some Sequence<String>) -> ActionRegistry {
        var copy = self
        for name in names { copy.actions[name] = nil }
        return copy
    }

    /// The built-in actions (SPEC §5).
    public static let builtIn = ActionRegistry([
        ActionSpec(
            name: "calendar.schedule_event",
            kind: .command(subject: Subjects.calendarSchedule, type: EventType.calendarSchedule),
            required: ["title", "start"], sideEffect: true),
        ActionSpec(
            name: "calendar.update_event",
            kind: .command(subject: Subjects.calendarUpdate, type: EventType.calendarUpdate),
            required: ["event_id"], sideEffect: true),
        ActionSpec(
            name: "calendar.cancel_event",
            kind: .command(subject: Subjects.calendarCancel, type: EventType.calendarCancel),
            required: ["event_id"], sideEffect: true),
        ActionSpec(
            name: "discovery.search", kind: .request(subject: Subjects.discoverySearch), required: ["query"],
            sideEffect: false),
        ActionSpec(name: "http.request", kind: .effect, required: ["method", "url"], sideEffect: true),
        ActionSpec(name: "delay", kind: .timer, required: [], sideEffect: false),
        ActionSpec(name: "transform", kind: .local, required: ["value"], sideEffect: false),
        ActionSpec(name: "notify", kind: .effect, required: ["message"], sideEffect: true),
        ActionSpec(name: "emit", kind: .effect, required: ["subject", "type"], sideEffect: true),
    ])
}
