import Foundation
import LedgerCore
import LedgerNATS
import Logging
import Synchronization

/// Which worker drives which run.
///
/// Exactly one worker drives a run: the one that started it, or the last one to claim it (`RunClaimed` in the
/// run's subject, appended at the run's expected sequence, so of two claimants one wins). Only the driving worker
/// starts attempts, re-sends attempts in flight, and acts on timers. Any worker may record into a run what it
/// received for it (a service's answer, an operator's cancel), each an append at the run's expected sequence; the
/// driving worker learns of it from its read models (`observe`) and carries on from there.
///
/// A run whose worker stopped (no heartbeat for a lease, see `WorkerLeases`) is claimed by the first worker whose
/// sweep sees it, which re-sends the attempts that were in flight once, with their idempotency keys.
extension Engine {
    /// Whether this worker may drive the run: it started or claimed it.
    func drives(_ state: RunState) -> Bool { state.worker == workerID }

    /// Tells the drivers of this worker's runs that another worker appended to them (from the read models' batches).
    func observe(_ batch: Projector.Batch) {
        let behind: [String: (RunDriver, UInt64)] = drivers.withLock { drivers in
            guard !drivers.isEmpty else { return [:] }
            var out: [String: (RunDriver, UInt64)] = [:]
            for (sequence, event) in batch.events {
                guard let runID = event.runid, let driver = drivers[runID],
                    driver.position.load(ordering: .relaxed) < sequence
                else { continue }
                out[runID] = (driver, sequence)
            }
            return out
        }
        for (driver, sequence) in behind.values { driver.send(.refresh(sequence)) }
    }

    /// Sweeps every half lease (at least every 100 ms) until cancelled.
    func keepSweeping() async {
        let interval = max(configuration.leaseTTL / 2, .milliseconds(100))
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            await sweep()
        }
    }

    /// Picks up the unfinished runs in the read models that no live worker drives: runs of workers that stopped,
    /// runs that name no worker (logs from before workers were recorded), and runs that name this worker but have no
    /// driver in this process (this worker was started again under the same id: its heartbeat is live again, so no
    /// other worker would ever take them), each claimed and then driven, its attempts in flight re-sent once. Runs
    /// driven by live workers are left alone. Claiming at the run's last sequence in the read model fences off a
    /// stale row: a run this process drove to its end meanwhile refuses the claim. Runs are picked up whatever the
    /// limit of runs in flight: a run already started must be driven (its timers, timeouts and answers wait on it),
    /// and the triggers' consumer waits until the count is below the limit again.
    func sweep() async {
        let rows: [(runID: String, worker: String?)]
        do {
            rows = try store.activeRuns()
        } catch {
            logger.error("could not list the unfinished runs", metadata: [LogKey.error: "\(error)"])
            return
        }
        let driven = drivers.withLock { Set($0.keys) }
        // A worker's judgement is reused within a quarter lease, then asked again (a long sweep must not go on
        // claiming the runs of a worker that has started beating again).
        var stopped: [String: (Bool, ContinuousClock.Instant)] = [:]
        let reuse = configuration.leaseTTL / 4
        var claimed = 0
        for row in rows where !driven.contains(row.runID) {
            if Task.isCancelled { return }
            if let worker = row.worker, worker != workerID {
                if let (_, at) = stopped[worker], ContinuousClock.now - at < reuse {
                } else {
                    stopped[worker] = (await leases.hasStopped(worker), ContinuousClock.now)
                }
                guard stopped[worker]?.0 == true else { continue }
            }
            // One run that cannot be picked up (its state unreadable, its definition gone or no longer valid) is
            // logged and left as it is; it never stops the sweep.
            do {
                guard let state = try store.run(row.runID), !state.isSettled, state.worker == row.worker,
                    let definition = try pinnedDefinition(of: state)
                else { continue }
                let reason: String
                switch row.worker {
                case workerID?: reason = "worker \(workerID) started again; it resumes the runs it drove"
                case let worker?: reason = "worker \(worker) stopped (no heartbeat for \(configuration.leaseTTL))"
                case nil: reason = "no worker was recorded for the run"
                }
                guard let mine = try await claimWithLink(state, definition: definition, reason: reason) else {
                    continue
                }
                _ = launch(state: mine.state, head: mine.head, definition: definition, resume: true)
                claimed += 1
            } catch {
                logger.error(
                    "run cannot be picked up", metadata: [LogKey.runID: "\(row.runID)", LogKey.error: "\(error)"])
            }
        }
        if claimed > 0 {
            logger.info(
                "took over unfinished runs no live worker drives",
                metadata: ["ledger.runs": "\(claimed)", "ledger.worker": "\(workerID)"])
        }
    }

    /// Appends `RunClaimed` for this worker at the run's last sequence. Nil when the run moved on meanwhile (the
    /// read model was behind, or another worker claimed it first): nothing is claimed then.
    func claim(_ state: RunState, definition: FlowDefinition, reason: String) async throws -> RunState? {
        try await claimWithLink(state, definition: definition, reason: reason)?.state
    }

    /// `claim`, with the link of the appended `RunClaimed`, so the driver that takes the run over appends its next
    /// event without reading the claim back.
    func claimWithLink(
        _ state: RunState, definition: FlowDefinition, reason: String
    ) async throws -> (state: RunState, head: ChainLink)? {
        let inFlight = RunDecider(definition: definition, registry: registry).inFlight(state).map {
            $0.execution.target.wireID
        }
        let claim = RunClaimed(worker: workerID, previous_worker: state.worker, in_flight: inFlight, reason: reason)
        do {
            let appended = try await ledger.append(
                .runClaimed(claim), to: .run(id: state.run_id, flowID: state.flow_id, flowVersion: state.flow_version),
                expectedLastSequence: state.last_sequence,
                context: EventContext(correlationID: state.run_id, traceparent: state.traceparent))
            runsClaimed.add(1, ordering: .relaxed)
            logger.info(
                "claimed a run", metadata: state.logMetadata.merging(["ledger.reason": "\(reason)"]) { $1 })
            return RunState.evolve(state, appended.event, sequence: appended.sequence).map { ($0, appended.link) }
        } catch let error as NATSError where error.isWrongLastSequence {
            return nil
        }
    }

    /// Hands an input to a run: to its driver in this worker (started when this worker drives the run and has none),
    /// or, when another worker drives it, recorded into it. `command` is an operator's (cancel, redrive): its
    /// refusal is returned; an answer's never is. Throws when the log or the read model cannot be read.
    func deliver(
        _ input: RunCommand, to state: RunState, definition: FlowDefinition, command: Bool
    ) async throws
        -> String?
    {
        var state = state
        for _ in 0..<5 {
            if let driver = drivers.withLock({ $0[state.run_id] }) {
                return try await Self.hand(input, command: command) { driver.send($0) }
            }
            if drives(state) {
                // No driver here (the run finished, or this worker restarted its driver): start one with the input
                // as its first mail, so it is never sent to a driver that has already stopped.
                let definition = definition
                let current = state
                return try await Self.hand(input, command: command) { mail in
                    _ = self.launch(state: current, definition: definition, resume: false, initial: mail)
                }
            }
            switch try await record(input, into: state, definition: definition) {
            case .recorded(let refusal): return refusal
            case .drivenHere(let fresh): state = fresh
            }
        }
        throw EngineError.unavailable("run \(state.run_id) kept changing hands; try again")
    }

    /// Sends an operator's command as a mail (through `post`) and waits until the run has decided on it: nil, or the
    /// run's refusal.
    static func handCommand(_ input: RunCommand, post: (RunMail) -> Void) async -> String? {
        await withCheckedContinuation { continuation in
            post(.command(input) { continuation.resume(returning: $0) })
        }
    }

    /// Sends an answer as a mail (through `post`) and waits until the run has handled it; throws when the run's
    /// driver stopped before applying it (the engine is stopping, or another worker took the run over), so that
    /// the answer is delivered again rather than acknowledged.
    static func handAnswer(_ input: RunCommand, post: (RunMail) -> Void) async throws {
        let applied = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            post(.input(input, done: { continuation.resume(returning: $0) }))
        }
        if !applied { throw AnswerNotApplied() }
    }

    static func hand(_ input: RunCommand, command: Bool, post: (RunMail) -> Void) async throws -> String? {
        if command { return await handCommand(input, post: post) }
        try await handAnswer(input, post: post)
        return nil
    }

    enum Recorded {
        /// Appended (or refused, with the reason).
        case recorded(refusal: String?)
        /// The run became this worker's meanwhile: hand the input to its driver instead.
        case drivenHere(RunState)
    }

    /// Records `input` into a run another worker drives: decides on it from the run's state and appends what the
    /// decision appends (a result, a cancel request), at the run's expected sequence, carrying out nothing else;
    /// the driving worker carries on from the log.
    func record(_ input: RunCommand, into state: RunState, definition: FlowDefinition) async throws -> Recorded {
        let decider = RunDecider(definition: definition, registry: registry)
        var state = state
        var head: ChainLink?
        for _ in 0..<50 {
            var conflict = false
            decision: for action in decider.decide(state, Self.checked(input), now: configuration.clock.now) {
                switch action {
                case .append(let body):
                    do {
                        let appended = try await ledger.append(
                            body,
                            to: .run(id: state.run_id, flowID: state.flow_id, flowVersion: state.flow_version),
                            expectedLastSequence: state.last_sequence, previous: head,
                            // In the run's trace (this worker has no span of the run: its driver has).
                            context: EventContext(correlationID: state.run_id, traceparent: state.traceparent))
                        state = RunState.evolve(state, appended.event, sequence: appended.sequence) ?? state
                        head = appended.link
                        eventsAppended.add(1, ordering: .relaxed)
                        metrics.appended(body, flowID: state.flow_id, definition: definition)
                    } catch let error as NATSError where error.isWrongLastSequence {
                        conflict = true
                        break decision
                    }
                case .refuse(let reason):
                    return .recorded(refusal: reason)
                case .execute, .publishOutput, .deliver, .wakeUp:
                    continue  // the driving worker's part
                }
            }
            guard conflict else { return .recorded(refusal: nil) }
            guard let fresh = try await foldRunFromLog(state.run_id) else { return .recorded(refusal: nil) }
            (state, head) = fresh
            if drives(state) { return .drivenHere(state) }
            // The run finished meanwhile: its worker no longer drives it, so an input that still changes it (a late
            // effect to record and undo) is taken over here, or nobody would carry it out.
            if state.isSettled,
                decider.decide(state, Self.checked(input), now: configuration.clock.now).contains(where: {
                    if case .append = $0 { true } else { false }
                }),
                let mine = try await claim(state, definition: definition, reason: "a late answer changes the run")
            {
                return .drivenHere(mine)
            }
        }
        throw EngineError.unavailable("run \(state.run_id) kept changing while an input was recorded; try again")
    }
}

/// The run's driver stopped before it applied an answer: deliver the answer again.
struct AnswerNotApplied: Error, CustomStringConvertible {
    var description: String {
        "the run's driver stopped before applying the answer (stopping, or the run changed hands)"
    }
}
