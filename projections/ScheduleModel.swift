public import LedgerCore

/// What the schedules read model holds of one flow's schedule: its cursor (the last nominal firing decided), its
/// last firing and run, a waiting (buffered) firing, whether it is paused and how many firings were skipped by
/// class. Every field comes from the log.
public struct ScheduleState: Codable, Sendable, Equatable {
    public var flow_id: String
    /// The latest nominal firing with a recorded outcome (Unix milliseconds): the scheduler carries on after it.
    public var cursor_ms: Int64?
    public var paused: Bool
    public var paused_by: String?
    public var paused_at: String?
    public var pause_reason: String?
    public var last_firing: LastFiring?
    /// The last run the schedule started, and where its start is in the log.
    public var last_run_id: String?
    public var last_run_sequence: UInt64?
    /// A firing recorded as started whose run has not been seen starting yet (nominal time, Unix ms).
    public var unstarted_ms: Int64?
    /// A buffered firing waiting for the running run to end (nominal time, Unix ms).
    public var buffered_ms: Int64?
    /// Firings that did not start, by class (a collapsed event counts as its `count`).
    public var skipped: [String: Int]
    /// Firings that started a run: recorded as started, or buffered and then started.
    public var started: Int
    /// The lateness of the started firings, summed (milliseconds; nil before the first).
    public var late_ms_total: Int64?
    /// The first `inactive` firing of the flow's current inactive period (nominal time, Unix ms): while it is set
    /// the scheduler records no more `inactive` firings; when the flow is active again it records the rest of the
    /// period as one event (`count`, `last_nominal_time`), which clears it, as does any other outcome.
    public var inactive_from_ms: Int64?

    public struct LastFiring: Codable, Sendable, Equatable {
        public var nominal_time: String
        public var outcome: String
        public var `class`: String?
        public var run_id: String?
        public var late_ms: Int64?
        public var at: String
    }

    public init(flow_id: String) {
        self.flow_id = flow_id
        paused = false
        skipped = [:]
        started = 0
    }
}

/// Schedules: `flow_id → ScheduleState`, folded from the firings' outcomes, pauses and resumes, and the starts of
/// scheduled runs.
public enum ScheduleModel: ReadModel {
    public static let table = "schedules"

    public static func key(for event: LedgerEvent) -> String? {
        switch event.body {
        case .scheduleFiring(let e): return e.flow_id
        case .scheduleStateChanged(let e): return e.flow_id
        case .runStarted(let e) where e.trigger.kind == .schedule && e.dedup_key != nil: return e.flow_id
        default: return nil
        }
    }

    public static func evolve(_ state: ScheduleState?, _ event: LedgerEvent, sequence: UInt64) -> ScheduleState? {
        switch event.body {
        case .scheduleFiring(let e):
            var s = state ?? ScheduleState(flow_id: e.flow_id)
            let nominal = Timestamp.parse(e.nominal_time).map { ScheduleSpec.millis($0) }
            let last = e.last_nominal_time.flatMap(Timestamp.parse).map { ScheduleSpec.millis($0) } ?? nominal
            if let last { s.cursor_ms = max(s.cursor_ms ?? last, last) }
            switch e.outcome {
            case .started:
                s.started += 1
                s.unstarted_ms = nominal
                s.late_ms_total = (s.late_ms_total ?? 0) &+ max(e.late_ms ?? 0, 0)
                s.inactive_from_ms = nil
            case .buffered:
                s.buffered_ms = nominal
                s.inactive_from_ms = nil
            case .skipped:
                s.skipped[e.class ?? "unknown", default: 0] += max(e.count ?? 1, 1)
                // The first inactive firing of a period opens it; the event closing it names its last firing.
                let opens = e.class == ScheduleFiring.SkipClass.inactive && e.last_nominal_time == nil
                s.inactive_from_ms = opens ? nominal : nil
            }
            s.last_firing = ScheduleState.LastFiring(
                nominal_time: e.last_nominal_time ?? e.nominal_time, outcome: e.outcome.rawValue, class: e.class,
                run_id: e.run_id, late_ms: e.late_ms, at: event.time)
            return s
        case .scheduleStateChanged(let e):
            var s = state ?? ScheduleState(flow_id: e.flow_id)
            s.paused = e.paused
            s.paused_by = e.paused ? e.actor : nil
            s.paused_at = e.paused ? event.time : nil
            s.pause_reason = e.paused ? e.reason : nil
            return s
        case .runStarted(let e):
            var s = state ?? ScheduleState(flow_id: e.flow_id)
            s.last_run_id = e.run_id
            s.last_run_sequence = sequence
            if let key = e.dedup_key {
                if let pending = s.unstarted_ms, key == ScheduleFiring.dedupKey(nominalMillis: pending) {
                    s.unstarted_ms = nil
                }
                if let pending = s.buffered_ms, key == ScheduleFiring.dedupKey(nominalMillis: pending) {
                    s.buffered_ms = nil
                    s.started += 1
                    if s.last_firing?.run_id == nil, s.last_firing?.outcome == "buffered" {
                        s.last_firing?.run_id = e.run_id
                    }
                }
            }
            return s
        default:
            return state
        }
    }
}
