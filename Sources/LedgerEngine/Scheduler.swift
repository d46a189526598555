public import Foundation
public import LedgerCore
import LedgerNATS
public import LedgerProjections
import Logging
import Synchronization

/// The schedules: every flow with a cron or interval trigger fires on the one process holding the scheduler's lease
/// (`SchedulerLease`). Each nominal firing gets exactly one outcome in the log (`ScheduleFiringStarted`,
/// `ScheduleFiringSkipped`, `ScheduleFiringBuffered` on `ledger.firing.<flow>.<nominal_ms>`, appended expecting the
/// subject to be empty), decided from the read models: where the schedule stands (the last firing decided), whether
/// it is paused, whether its last run is still running. A started firing's run id derives from the flow and the
/// nominal time, and its `FlowRunStarted` expects the run's subject to be empty, so a firing never starts twice;
/// a firing recorded as started whose run is not in the log yet (a crash in between) is started by the next tick.
extension Engine {
    /// How often the scheduler looks at the schedules (and at its lease).
    var schedulerTick: Duration { min(leases.ttl / 3, .milliseconds(250)) }

    /// Keeps the lease and fires the schedules while it is held, until cancelled.
    func keepScheduling() async {
        var lastLeaseStep: ContinuousClock.Instant?
        let clock = ContinuousClock()
        while !Task.isCancelled {
            if lastLeaseStep.map({ clock.now - $0 >= leases.ttl / 3 }) ?? true {
                lastLeaseStep = clock.now
                await schedulerLease.step(healthy: leases.isHealthy)
            }
            if schedulerLease.isLeader, ready.load(ordering: .acquiring), ledger.isConnected {
                do {
                    try await scheduleTick()
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("a scheduler tick failed; trying again", metadata: [LogKey.error: "\(error)"])
                }
            }
            do { try await Task.sleep(for: schedulerTick) } catch { return }
        }
    }

    /// One look at every schedule.
    public func scheduleTick() async throws {
        for record in try store.flows() {
            guard let scheduled = try scheduledFlow(record) else { continue }
            try await tick(scheduled)
        }
    }

    /// A flow with a schedule, as the scheduler sees it.
    struct ScheduledFlow {
        var record: FlowRecord
        var definition: FlowDefinition
        var version: Int
        var hash: String
        var trigger: FlowTrigger
        var spec: ScheduleSpec
        var active: Bool
        /// When the flow was last activated (its schedule starts after it).
        var activatedMillis: Int64
    }

    /// The flow's schedule: of its active version, else of the version it was last active with; nil when the flow
    /// has no schedule or was never active.
    func scheduledFlow(_ record: FlowRecord) throws -> ScheduledFlow? {
        guard let activation = record.history.last(where: { $0.change == "activated" }),
            let at = Timestamp.parse(activation.at)
        else { return nil }
        let active = record.status == .active && record.active_version != nil
        let version = active ? record.active_version! : activation.version
        guard let (definition, hash) = try? catalog.pinned(flowID: record.flow_id, version: version),
            let trigger = definition.trigger, trigger.isSchedule,
            let spec = try? ScheduleSpec.of(trigger)
        else { return nil }
        return ScheduledFlow(
            record: record, definition: definition, version: version, hash: hash, trigger: trigger, spec: spec,
            active: active, activatedMillis: ScheduleSpec.millis(at))
    }

    /// The jitter of one firing: a fixed share of the trigger's jitter, from the flow and the nominal time.
    static func jitterMillis(_ trigger: FlowTrigger, flowID: String, nominal: Int64) -> Int64 {
        guard let text = trigger.jitter, let seconds = DurationText.seconds(text) else { return 0 }
        let span = Int64(seconds * 1000)
        guard span > 0 else { return 0 }
        let hash = SHA256.hex("\(flowID)/\(nominal)").prefix(12)
        return Int64(UInt64(hash, radix: 16) ?? 0) % span
    }

    static func catchupMillis(_ trigger: FlowTrigger) -> Int64 {
        Int64((trigger.catchup_window.flatMap(DurationText.seconds) ?? 60) * 1000)
    }

    func tick(_ flow: ScheduledFlow) async throws {
        let flowID = flow.record.flow_id
        var state = try store.schedule(flowID) ?? ScheduleState(flow_id: flowID)
        let now = ScheduleSpec.millis(configuration.clock.now)
        guard flow.active else { return try await recordInactive(flow, state: state, now: now) }
        if let from = state.inactive_from_ms { try await closeInactive(flow, from: from) }
        // A firing recorded as started whose run is not in the models yet: start it (a repeat is refused by the log).
        if flow.active, let pending = state.unstarted_ms,
            try store.dedup(flowID: flowID, key: ScheduleFiring.dedupKey(nominalMillis: pending)) == nil
        {
            _ = try await startFiring(flow, nominal: pending, now: now)
        }
        // A buffered firing starts once the run before it ended.
        if flow.active, let buffered = state.buffered_ms, !(await isRunning(state.last_run_id, state.last_run_sequence))
        {
            if let started = try await startFiring(flow, nominal: buffered, now: now) {
                state.last_run_id = started
                state.last_run_sequence = nil
                state.buffered_ms = nil
            }
        }
        let known = scheduleCursors.withLock { $0[flowID] }
        let cursor = max(state.cursor_ms ?? flow.activatedMillis, known ?? .min, flow.activatedMillis)
        let due = flow.spec.firings(
            after: ScheduleSpec.date(millis: cursor), through: ScheduleSpec.date(millis: now),
            limit: ScheduleSpec.maxCount)
        guard !due.isEmpty else { return }
        let window = Self.catchupMillis(flow.trigger)
        let nominals = due.map { ScheduleSpec.millis($0) }
        // Firings more than the catch-up window late (after their jitter): recorded together as missed. Nominal
        // time plus jitter grows with the nominal time (the jitter is shorter than the interval), so they lead.
        func late(_ nominal: Int64) -> Int64 {
            now - nominal - Self.jitterMillis(flow.trigger, flowID: flowID, nominal: nominal)
        }
        let missed = Array(nominals.prefix { late($0) > window })
        if let first = missed.first, let last = missed.last {
            let firing = ScheduleFiring(
                flow_id: flowID, nominal_time: Timestamp.format(millis: first), outcome: .skipped,
                class: ScheduleFiring.SkipClass.missedCatchupWindow,
                reason: "more than the catch-up window (\(window / 1000)s) late when the scheduler reached it",
                count: missed.count, last_nominal_time: missed.count > 1 ? Timestamp.format(millis: last) : nil,
                worker: workerID)
            _ = try await record(firing, nominal: first, through: last)
        }
        for nominal in nominals.dropFirst(missed.count) {
            let jitter = Self.jitterMillis(flow.trigger, flowID: flowID, nominal: nominal)
            if now < nominal + jitter { break }  // later ones wait too: firings are decided in order
            try await decide(flow, nominal: nominal, jitter: jitter, now: now, state: &state)
        }
    }

    /// A flow that is not active (deactivated, broken): the first firing due after its last decided one is recorded
    /// as skipped, class `inactive`, and opens its inactive period (`ScheduleState.inactive_from_ms`); no more are
    /// recorded while the period is open (`closeInactive` records the rest once the flow is active again).
    func recordInactive(_ flow: ScheduledFlow, state: ScheduleState, now: Int64) async throws {
        guard state.inactive_from_ms == nil else { return }
        let flowID = flow.record.flow_id
        let known = scheduleCursors.withLock { $0[flowID] }
        let cursor = max(state.cursor_ms ?? flow.activatedMillis, known ?? .min, flow.activatedMillis)
        guard let next = flow.spec.next(after: ScheduleSpec.date(millis: cursor)) else { return }
        let nominal = ScheduleSpec.millis(next)
        guard nominal <= now else { return }
        let firing = ScheduleFiring(
            flow_id: flowID, nominal_time: Timestamp.format(millis: nominal), outcome: .skipped,
            class: ScheduleFiring.SkipClass.inactive,
            reason:
                "flow \(flowID) is \(flow.record.status.rawValue): its firings are not recorded again until it is active, then all of them at once",
            worker: workerID)
        // Wait for the read models to show the period open, so the next tick does not open another.
        if let sequence = try await record(firing, nominal: nominal) {
            _ = await store.progress.wait(for: sequence, timeout: configuration.projectionWait)
        }
    }

    /// The flow is active again after an inactive period opened at `from`: the firings after it up to the flow's
    /// activation are recorded as one event (class `inactive`, `count`, `last_nominal_time`) on the subject of the
    /// first of them, so the skipped count by class holds every firing of the period.
    func closeInactive(_ flow: ScheduledFlow, from: Int64) async throws {
        let (count, last) = flow.spec.tally(
            after: ScheduleSpec.date(millis: from), through: ScheduleSpec.date(millis: flow.activatedMillis))
        guard count > 0, let last, let first = flow.spec.next(after: ScheduleSpec.date(millis: from)) else { return }
        let flowID = flow.record.flow_id
        let (firstMillis, lastMillis) = (ScheduleSpec.millis(first), ScheduleSpec.millis(last))
        let firing = ScheduleFiring(
            flow_id: flowID, nominal_time: Timestamp.format(millis: firstMillis), outcome: .skipped,
            class: ScheduleFiring.SkipClass.inactive,
            reason: "the rest of the inactive period of flow \(flowID), recorded when it was active again",
            count: count, last_nominal_time: Timestamp.format(millis: lastMillis), worker: workerID)
        if let sequence = try await record(firing, nominal: firstMillis, through: lastMillis) {
            _ = await store.progress.wait(for: sequence, timeout: configuration.projectionWait)
        }
    }

    /// Decides one due firing and records its outcome (and starts its run when it starts).
    func decide(
        _ flow: ScheduledFlow, nominal: Int64, jitter: Int64, now: Int64, state: inout ScheduleState
    ) async throws {
        let flowID = flow.record.flow_id
        func skip(_ skipClass: String, _ reason: String) -> ScheduleFiring {
            ScheduleFiring(
                flow_id: flowID, nominal_time: Timestamp.format(millis: nominal), outcome: .skipped, class: skipClass,
                reason: reason, jitter_ms: jitter > 0 ? jitter : nil, worker: workerID)
        }
        if state.paused {
            _ = try await record(
                skip(ScheduleFiring.SkipClass.paused, "the schedule is paused by \(state.paused_by ?? "someone")"),
                nominal: nominal)
            return
        }
        let policy = flow.trigger.overlapPolicy
        if policy != .allow_all, let previous = state.last_run_id,
            await isRunning(previous, state.last_run_sequence)
        {
            switch policy {
            case .skip:
                _ = try await record(
                    skip(ScheduleFiring.SkipClass.overlap, "run \(previous) is still running (overlap: skip)"),
                    nominal: nominal)
                return
            case .buffer_one:
                if state.buffered_ms != nil {
                    _ = try await record(
                        skip(
                            ScheduleFiring.SkipClass.overlap,
                            "run \(previous) is still running and a firing already waits (overlap: buffer_one)"),
                        nominal: nominal)
                } else {
                    let buffered = ScheduleFiring(
                        flow_id: flowID, nominal_time: Timestamp.format(millis: nominal), outcome: .buffered,
                        reason: "waits for run \(previous) to end (overlap: buffer_one)",
                        jitter_ms: jitter > 0 ? jitter : nil, worker: workerID)
                    if try await record(buffered, nominal: nominal) != nil { state.buffered_ms = nominal }
                }
                return
            case .cancel_other:
                do {
                    try await cancelRun(
                        previous, actor: ActorRef(type: "service", id: "scheduler"),
                        reason:
                            "cancelled by the firing of \(Timestamp.format(millis: nominal)) (overlap: cancel_other)")
                } catch {
                    logger.warning(
                        "the scheduler could not cancel the running run (overlap: cancel_other)",
                        metadata: [LogKey.runID: "\(previous)", LogKey.error: "\(error)"])
                }
            case .allow_all: break
            }
        }
        let late = max(0, now - nominal - jitter)
        let runID = DerivedID.uuid("\(flowID)/\(ScheduleFiring.dedupKey(nominalMillis: nominal))")
        let started = ScheduleFiring(
            flow_id: flowID, nominal_time: Timestamp.format(millis: nominal), outcome: .started, run_id: runID,
            late_ms: late, jitter_ms: jitter > 0 ? jitter : nil, worker: workerID)
        guard try await record(started, nominal: nominal) != nil else { return }
        if let run = try await startFiring(flow, nominal: nominal, now: now) {
            state.last_run_id = run
            state.last_run_sequence = nil
        }
    }

    /// Appends a firing's outcome on its own subject, expecting it empty, and answers its log sequence; nil when the
    /// firing already had one (another scheduler, or this one before a restart, decided it). Moves this process's
    /// cursor past it. The schedule metrics are not counted here but from the read model (`sampleSchedules`).
    @discardableResult
    func record(_ firing: ScheduleFiring, nominal: Int64, through: Int64? = nil) async throws -> UInt64? {
        let flowID = firing.flow_id
        defer {
            scheduleCursors.withLock { cursors in
                cursors[flowID] = max(cursors[flowID] ?? .min, through ?? nominal)
            }
        }
        let appended: AppendedEvent
        do {
            appended = try await ledger.append(
                .scheduleFiring(firing), to: .firing(flowID: flowID, nominalMillis: nominal), expectedLastSequence: 0,
                id: DerivedID.uuid("firing/\(flowID)/\(nominal)"), retry: .once)
        } catch let error as NATSError where error.isWrongLastSequence {
            return nil
        }
        if firing.outcome == .skipped {
            logger.info(
                "a scheduled firing did not start",
                metadata: [
                    LogKey.flowID: "\(flowID)", "ledger.nominal_time": "\(firing.nominal_time)",
                    "ledger.class": "\(firing.class ?? "")", "ledger.count": "\(firing.count ?? 1)",
                ])
        }
        return appended.sequence
    }

    /// Starts the run of a firing (its id derived from flow and nominal time). Returns its run id, nil when it
    /// could not start (logged).
    func startFiring(_ flow: ScheduledFlow, nominal: Int64, now: Int64) async throws -> String? {
        let flowID = flow.record.flow_id
        let scheduledAt = Timestamp.format(millis: nominal)
        var data: [String: JSONValue] = [
            "scheduled_at": .string(scheduledAt), "late_ms": .number(Double(max(0, now - nominal))),
        ]
        if let cron = flow.trigger.cron { data["cron"] = .string(cron) }
        if let interval = flow.trigger.interval { data["interval"] = .string(interval) }
        if let zone = flow.trigger.timezone { data["timezone"] = .string(zone) }
        var trigger = RunTrigger(kind: .schedule, event_type: "Schedule", data: .object(data))
        trigger.scheduled_at = scheduledAt
        let input = flow.definition.applyingInputDefaults(to: .object([:]))
        let onBehalfOf = flow.definition.run_as == .service ? nil : flow.trigger.on_behalf_of
        do {
            switch try await startRun(
                flowID: flowID, version: flow.version, definition: flow.definition, definitionHash: flow.hash,
                trigger: trigger, input: input, mode: .live, actor: "scheduler", actorType: "service",
                onBehalfOf: onBehalfOf, dedupKey: ScheduleFiring.dedupKey(nominalMillis: nominal), messageID: nil,
                channel: nil)
            {
            case .started(let runID, _): return runID
            case .duplicate(let runID): return runID
            }
        } catch let error as CancellationError {
            throw error
        } catch {
            logger.error(
                "a scheduled run could not start", metadata: [LogKey.flowID: "\(flowID)", LogKey.error: "\(error)"])
            return nil
        }
    }

    /// Whether `runID` has not finished, as the read models say once they reach its start (unknown counts as
    /// running: a firing is never started beside a run that may still be going).
    func isRunning(_ runID: String?, _ sequence: UInt64?) async -> Bool {
        guard let runID else { return false }
        if let sequence, store.progress.position < sequence {
            _ = await store.progress.wait(for: sequence, timeout: configuration.projectionWait)
        }
        if let run = try? store.run(runID) { return !run.isSettled }
        if sequence == nil {
            // Started by this tick: wait for the models to show it.
            for _ in 0..<50 {
                if let run = try? store.run(runID) { return !run.isSettled }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        return true
    }

    // MARK: - Operators

    /// Pauses or resumes a flow's schedule (audited): `SchedulePaused` / `ScheduleResumed` on
    /// `ledger.schedule.<flow>`. Returns once the read models show it.
    public func setSchedulePaused(
        _ flowID: String, paused: Bool, actor: ActorRef, reason: String?
    ) async throws
        -> ScheduleState
    {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard Self.hasSchedule(record) else {
            throw EngineError.invalidState("flow \(flowID) has no schedule (no cron or interval trigger)")
        }
        if let reason, reason.utf8.count > 1024 { throw EngineError.badRequest("reason is longer than 1024 bytes") }
        try requireReachableLog()
        let appended = try await ledger.append(
            .scheduleStateChanged(
                ScheduleStateChanged(
                    flow_id: flowID, paused: paused, actor: actor.id, actor_type: actor.type, reason: reason)),
            to: .schedule(flowID: flowID), expectedLastSequence: nil, retry: .once)
        _ = await store.progress.wait(for: appended.sequence, timeout: configuration.projectionWait)
        return try store.schedule(flowID) ?? ScheduleState(flow_id: flowID)
    }

    static func hasSchedule(_ record: FlowRecord) -> Bool {
        record.versions.contains { entry in
            guard let trigger = entry.definition["trigger"] else { return false }
            return trigger["cron"] != nil || trigger["interval"] != nil
        }
    }

    /// Starts the firings of an active flow's schedule between `from` and `to` (at most 1000) that have no outcome
    /// yet; firings already decided are left as they are (a firing never starts twice).
    public func backfillSchedule(_ flowID: String, from: Date, to: Date, actor: ActorRef) async throws -> [JSONValue] {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard let flow = try scheduledFlow(record), flow.active else {
            throw EngineError.invalidState("flow \(flowID) has no active schedule: activate it first")
        }
        guard from.timeIntervalSince1970 >= 0, to.timeIntervalSince1970 < 7_258_118_400 else {
            throw EngineError.badRequest("from and to must lie between 1970 and 2199")
        }
        guard from < to else {
            throw EngineError.badRequest(
                "from (\(Timestamp.format(from))) must be before to (\(Timestamp.format(to))): swap them"
            )
        }
        let now = configuration.clock.now
        guard to <= now else {
            throw EngineError.badRequest(
                "a backfill covers the past only: to is after now (\(Timestamp.format(now))); the scheduler fires what is still to come"
            )
        }
        let firings = flow.spec.firings(after: from.addingTimeInterval(-0.001), through: to, limit: 1001)
        guard firings.count <= ScheduleSpec.maxCount else {
            throw EngineError.badRequest(
                "the range holds more than \(ScheduleSpec.maxCount) firings; backfill a shorter range at once (several requests)"
            )
        }
        try requireReachableLog()
        var out: [JSONValue] = []
        let nowMillis = ScheduleSpec.millis(now)
        for date in firings {
            let nominal = ScheduleSpec.millis(date)
            let runID = DerivedID.uuid("\(flowID)/\(ScheduleFiring.dedupKey(nominalMillis: nominal))")
            let firing = ScheduleFiring(
                flow_id: flowID, nominal_time: Timestamp.format(millis: nominal), outcome: .started,
                reason: "backfill by \(actor.type) \(actor.id)", run_id: runID, late_ms: max(0, nowMillis - nominal),
                worker: workerID)
            // A firing that already has an outcome keeps it (never started twice).
            guard try await self.record(firing, nominal: nominal) != nil else {
                out.append(["nominal_time": .string(firing.nominal_time), "outcome": "already_decided"])
                continue
            }
            _ = try await startFiring(flow, nominal: nominal, now: nowMillis)
            out.append(["nominal_time": .string(firing.nominal_time), "run_id": .string(runID), "outcome": "started"])
        }
        return out
    }
}

extension Engine {
    /// Every flow with a schedule: its schedule and policy, its next firings (in its time zone), its last firing and
    /// run, whether it is paused and how many firings were skipped by class.
    public func schedules(next count: Int = 3) throws -> [JSONValue] {
        let now = configuration.clock.now
        var out: [JSONValue] = []
        for record in try store.flows() {
            let version = record.active_version ?? record.current_version
            guard let (definition, _) = try? catalog.pinned(flowID: record.flow_id, version: version),
                let trigger = definition.trigger, trigger.isSchedule, let spec = try? ScheduleSpec.of(trigger)
            else { continue }
            let state = try store.schedule(record.flow_id) ?? ScheduleState(flow_id: record.flow_id)
            let zone = (try? ScheduleSpec.zone(trigger.timezone)) ?? TimeZone(secondsFromGMT: 0)!
            var schedule: [String: JSONValue] = [:]
            if let cron = trigger.cron { schedule["cron"] = .string(cron) }
            schedule["timezone"] = .string(trigger.timezone ?? "UTC")
            if let interval = trigger.interval { schedule["interval"] = .string(interval) }
            var policy: [String: JSONValue] = [
                "overlap": .string(trigger.overlapPolicy.rawValue),
                "catchup_window": .string(trigger.catchup_window ?? "1m"),
            ]
            if let jitter = trigger.jitter { policy["jitter"] = .string(jitter) }
            if let user = trigger.on_behalf_of { policy["on_behalf_of"] = .string(user) }
            var skipped: [String: JSONValue] = [:]
            for skipClass in ScheduleFiring.SkipClass.all {
                skipped[skipClass] = .number(Double(state.skipped[skipClass] ?? 0))
            }
            var entry: [String: JSONValue] = [
                "flow_id": .string(record.flow_id), "flow_status": .string(record.status.rawValue),
                "version": .number(Double(version)), "schedule": .object(schedule), "policy": .object(policy),
                "paused": .bool(state.paused),
                "next_firings": .array(
                    record.status == .active
                        ? spec.preview(after: now, count: count).map { .string(RFC3339.string($0, in: zone)) } : []),
                "skipped": .object(skipped), "started": .number(Double(state.started)),
            ]
            if state.paused {
                entry["paused_by"] = state.paused_by.map(JSONValue.string) ?? .null
                entry["paused_at"] = state.paused_at.map(JSONValue.string) ?? .null
            }
            if let last = state.last_firing {
                var firing: [String: JSONValue] = [
                    "nominal_time": .string(last.nominal_time), "outcome": .string(last.outcome),
                    "at": .string(last.at),
                ]
                if let c = last.class { firing["class"] = .string(c) }
                if let run = last.run_id { firing["run_id"] = .string(run) }
                if let late = last.late_ms { firing["late_ms"] = .number(Double(late)) }
                entry["last_firing"] = .object(firing)
            }
            if let run = state.last_run_id { entry["last_run_id"] = .string(run) }
            if let buffered = state.buffered_ms { entry["buffered"] = .string(Timestamp.format(millis: buffered)) }
            out.append(.object(entry))
        }
        return out
    }
}
