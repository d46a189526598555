/// `ScheduleFiringStarted` / `ScheduleFiringSkipped` / `ScheduleFiringBuffered` (on
/// `ledger.firing.<flow_id>.<nominal_ms>`): what became of one nominal firing of a flow's schedule. Appended expecting
/// the subject to be empty, so each firing has exactly one outcome whoever decides it (two schedulers racing, a
/// restart in the middle). A started firing's run id derives from the flow and the nominal time.
public struct ScheduleFiring: Codable, Sendable, Equatable {
    /// `started`, `skipped` or `buffered`.
    public enum Outcome: String, Codable, Sendable {
        case started, skipped, buffered
    }

    public var flow_id: String
    /// The firing's nominal time (RFC 3339, UTC).
    public var nominal_time: String
    public var outcome: Outcome
    /// Why a firing did not start: `skip_overlap`, `missed_catchup_window`, `paused`, `inactive`.
    public var `class`: String?
    public var reason: String?
    /// The run a started firing starts.
    public var run_id: String?
    /// How late after its nominal time (plus its jitter) the firing was decided, in milliseconds.
    public var late_ms: Int64?
    /// The jitter of the firing, in milliseconds.
    public var jitter_ms: Int64?
    /// Firings recorded together (missed ones collapsed into one event): how many, and the last one's time.
    public var count: Int?
    public var last_nominal_time: String?
    /// The scheduler that decided it (its worker id).
    public var worker: String?

    public init(
        flow_id: String, nominal_time: String, outcome: Outcome, class: String? = nil, reason: String? = nil,
        run_id: String? = nil, late_ms: Int64? = nil, jitter_ms: Int64? = nil, count: Int? = nil,
        last_nominal_time: String? = nil, worker: String? = nil
    ) {
        self.flow_id = flow_id
        self.nominal_time = nominal_time
        self.outcome = outcome
        self.class = `class`
        self.reason = reason
        self.run_id = run_id
        self.late_ms = late_ms
        self.jitter_ms = jitter_ms
        self.count = count
        self.last_nominal_time = last_nominal_time
        self.worker = worker
    }

    /// The event type of each outcome.
    public var type: String {
        switch outcome {
        case .started: return EventType.scheduleFiringStarted
        case .skipped: return EventType.scheduleFiringSkipped
        case .buffered: return EventType.scheduleFiringBuffered
        }
    }

    /// The classes of firings that did not start.
    public enum SkipClass {
        public static let overlap = "skip_overlap"
        public static let missedCatchupWindow = "missed_catchup_window"
        public static let paused = "paused"
        public static let inactive = "inactive"
        public static let all = [overlap, missedCatchupWindow, paused, inactive]
    }

    /// The dedup key of a started firing's run (its id is `DerivedID.uuid("<flow>/<key>")`).
    public static func dedupKey(nominalMillis: Int64) -> String { "schedule/\(nominalMillis)" }
}

/// `SchedulePaused` / `ScheduleResumed` (on `ledger.schedule.<flow_id>`): a person paused or resumed a flow's
/// schedule without editing the flow.
public struct ScheduleStateChanged: Codable, Sendable, Equatable {
    public var flow_id: String
    public var paused: Bool
    public var actor: String
    public var actor_type: String?
    public var reason: String?

    public init(flow_id: String, paused: Bool, actor: String, actor_type: String?, reason: String?) {
        self.flow_id = flow_id
        self.paused = paused
        self.actor = actor
        self.actor_type = actor_type
        self.reason = reason
    }
}
