import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging
import Synchronization

/// Messages into a run's mailbox.
enum RunMail: Sendable {
    /// A service's answer (or an attempt's own result); `done` says whether the run applied it (false: the driver
    /// stopped first, so whoever delivered it must deliver it again, never acknowledge it).
    case input(RunCommand, done: (@Sendable (_ applied: Bool) -> Void)?)
    case wake
    /// An operator's command (cancel, redrive): answered with nil once its event is in the log, or the refusal.
    case command(RunCommand, reply: @Sendable (String?) -> Void)
    /// Another worker appended to the run (seen by the read models at this sequence): read it again and go on.
    case refresh(UInt64)
}

/// The handle of a run being driven: its mailbox.
final class RunDriver: Sendable {
    let runID: String
    let mailbox: AsyncStream<RunMail>.Continuation
    /// The sequence of the run's last event this driver knows of.
    let position: Atomic<UInt64>
    /// A command's reply when its driver stopped first: the caller decides again on the run as the log has it.
    static let stopped = "\u{0}stopped"
    /// A command's reply when the decision could not be recorded (NATS away, the engine stopping).
    static let notRecorded = "\u{0}not-recorded"

    init(runID: String, mailbox: AsyncStream<RunMail>.Continuation, position: UInt64) {
        self.runID = runID
        self.mailbox = mailbox
        self.position = Atomic(position)
    }
    func send(_ mail: RunMail) {
        guard case .terminated = mailbox.yield(mail) else { return }
        // The driver stopped meanwhile (the run finished or changed hands, or the engine is stopping).
        mail.refuse()
    }
}

extension RunMail {
    /// Answers a mail no driver will handle: an answer is delivered again (never acknowledged unapplied), a
    /// command is answered so that its caller decides again on the run as the log has it.
    func refuse() {
        switch self {
        case .input(_, let done): done?(false)
        case .command(_, let reply): reply(RunDriver.stopped)
        case .wake, .refresh: break
        }
    }
}

extension Engine {
    // MARK: - Driving runs

    /// Starts the run's driver (unless one runs already) and returns it.
    /// `head` is the link of the run's last event when the caller has it (it appended it, or read it), so the
    /// driver's first append carries its hash without reading it back. `segment` is the span of the run's start when
    /// the caller started the run; otherwise the driver starts a span continuing the run's trace.
    func launch(
        state: RunState, head: ChainLink? = nil, definition: FlowDefinition, resume: Bool, initial: RunMail? = nil,
        segment: TraceSpan? = nil
    ) -> RunDriver {
        let (stream, continuation) = AsyncStream<RunMail>.makeStream(bufferingPolicy: .unbounded)
        let candidate = RunDriver(runID: state.run_id, mailbox: continuation, position: state.last_sequence)
        let (driver, isNew) = drivers.withLock { drivers -> (RunDriver, Bool) in
            if let existing = drivers[state.run_id] { return (existing, false) }
            drivers[state.run_id] = candidate
            runsInFlightPeak.max(drivers.count, ordering: .relaxed)
            return (candidate, true)
        }
        guard isNew else {
            continuation.finish()
            segment?.end()
            if let initial { driver.send(initial) }
            return driver
        }
        let segment = segment ?? startSegment(of: state, resumed: true)
        // Made under the lock, so the driver's later tasks (`awaitNextMail`) are registered after this one.
        tasks.withLock { tasks in
            tasks[state.run_id] = Task {
                var loop = RunLoop(
                    state: state, decider: RunDecider(definition: definition, registry: registry), driver: driver,
                    segment: segment)
                loop.head = head
                await self.drive(&loop, stream: stream, resume: resume, initial: initial)
            }
        }
        return driver
    }

    struct RunLoop {
        var state: RunState {
            didSet { driver.position.store(state.last_sequence, ordering: .relaxed) }
        }
        /// The place and hash of the last event this driver appended or read (`EventChain`): its next append
        /// carries the hash as `prevhash` when the run is still at that place.
        var head: ChainLink?
        let decider: RunDecider
        let driver: RunDriver
        var timer: (at: Date, task: Task<Void, Never>)?
        var executions: [Task<Void, Never>] = []
        /// Another worker claimed the run: this one stops driving it.
        var handedOver = false
        /// The last pass could not record its decision (NATS away, the engine stopping, an event refused).
        var unrecorded = false
        /// This worker's span of the run (`RunTracing`): the parent of its attempts' spans.
        let segment: TraceSpan
        /// The spans of the attempts in flight.
        var attempts: [AttemptKey: TraceSpan] = [:]

        init(state: RunState, decider: RunDecider, driver: RunDriver, segment: TraceSpan) {
            self.state = state
            self.decider = decider
            self.driver = driver
            self.segment = segment
        }

        /// Whether the loop has nothing more to do: the run finished, or another worker drives it now.
        var isOver: Bool { state.isSettled || handedOver }
    }

    func drive(_ loop: inout RunLoop, stream: AsyncStream<RunMail>, resume: Bool, initial: RunMail?) async {
        let runID = loop.state.run_id
        // Launched while the drivers were being stopped (its task may have been made after `stopDrivers` read them):
        // it ends before doing anything, and its first mail is answered "not applied".
        if driversStopping.load(ordering: .acquiring) {
            initial?.refuse()
            await endDriving(&loop, stream)
            return
        }
        if resume {
            for (execution, startedAt) in loop.decider.inFlight(loop.state) {
                logger.info(
                    "re-sending an attempt that was in flight when the run was taken over",
                    metadata: loop.state.logMetadata.merging([
                        LogKey.stepID: "\(execution.target)", LogKey.attempt: "\(execution.attempt)",
                    ]) { $1 })
                execute(execution, startedAt: startedAt, &loop)
            }
            if let delivery = loop.decider.deliveryInFlight(loop.state) {
                logger.info(
                    "re-sending a webhook delivery that was in flight when the run was taken over",
                    metadata: [LogKey.runID: "\(runID)", LogKey.attempt: "\(delivery.attempt)"])
                deliver(delivery, &loop)
            }
        }
        if let initial {
            await handle(initial, &loop)
        } else {
            await process(.advance, &loop)
        }
        await awaitNextMail(loop, stream)
    }

    /// Waits for the run's next mail in a new task, which handles it and does the same, or ends the driver once
    /// the run is over (or the engine stops).
    ///
    /// A task keeps the slabs its deepest call took from Swift's task allocator until it ends, and deciding and
    /// appending a step takes about 40 KB of them: a run waiting for an answer or a timer in the task that handled
    /// its last mail would hold them for as long as it waits (measured: 57 KB of heap per run in flight). The new
    /// task holds only its own frame while it waits; the one that handled the mail ends. The cost is one task per
    /// mail, and only runs that wait get mail: a run of local steps (`transform`, decided inline) is driven to its
    /// end in its first pass.
    func awaitNextMail(_ loop: RunLoop, _ stream: AsyncStream<RunMail>) async {
        var loop = loop
        guard !loop.isOver, !Task.isCancelled, !driversStopping.load(ordering: .acquiring) else {
            await endDriving(&loop, stream)
            return
        }
        // Made under the lock that `stopDrivers` reads the tasks under: it is cancelled there, or it sees the flag.
        tasks.withLock { tasks in
            tasks[loop.state.run_id] = Task { [loop] in
                var loop = loop
                var mails = stream.makeAsyncIterator()
                if !self.driversStopping.load(ordering: .acquiring), let mail = await mails.next() {
                    await self.handle(mail, &loop)
                    await self.awaitNextMail(loop, stream)
                } else {
                    await self.endDriving(&loop, stream)
                }
            }
        }
    }

    /// Stops driving the run: its timer and attempts are cancelled, its spans end, and mails that arrive later are
    /// answered "not applied".
    func endDriving(_ loop: inout RunLoop, _ stream: AsyncStream<RunMail>) async {
        let runID = loop.state.run_id
        loop.timer?.task.cancel()
        for execution in loop.executions { execution.cancel() }
        loop.endSpans()
        // The task first: once the driver is gone, a new one for the run may register a task of its own.
        tasks.withLock { _ = $0.removeValue(forKey: runID) }
        drivers.withLock { _ = $0.removeValue(forKey: runID) }
        loop.driver.mailbox.finish()
        // Messages that reached the mailbox after the end: acknowledge answers (the run ignores late ones) and
        // answer operators' commands, so no caller waits for a run that has stopped.
        for await mail in stream { mail.refuse() }
    }

    func handle(_ mail: RunMail, _ loop: inout RunLoop) async {
        switch mail {
        case .input(let input, let done):
            await process(Self.checked(input), &loop)
            done?(!Task.isCancelled && !loop.handedOver)
        case .wake:
            loop.timer = nil
            await process(.advance, &loop)
        case .command(let input, let reply):
            let refusal = await process(input, &loop)
            if loop.handedOver {
                reply(RunDriver.stopped)
            } else if loop.unrecorded || Task.isCancelled {
                reply(RunDriver.notRecorded)
            } else {
                reply(refusal)
            }
        case .refresh(let sequence):
            guard loop.state.last_sequence < sequence else { return }
            do {
                guard let stored = try store.run(loop.state.run_id), stored.last_sequence > loop.state.last_sequence
                else { return }
                adopt(stored, &loop)
            } catch {
                logger.warning(
                    "could not read the run again after another worker appended to it",
                    metadata: loop.state.logMetadata.merging([LogKey.error: "\(error)"]) { $1 })
                return
            }
            if !loop.handedOver { await process(.advance, &loop) }
        }
    }

    /// Takes `state` (read again from the log or the read models) as the run's, keeping what only this driver knows
    /// (that the output was published); notes when another worker claimed the run meanwhile.
    func adopt(_ state: RunState, head: ChainLink? = nil, _ loop: inout RunLoop) {
        let published = loop.state.output_sequence
        loop.state = state
        if let head { loop.head = head }
        if loop.state.output_sequence == nil { loop.state.output_sequence = published }
        if !drives(state) {
            loop.handedOver = true
            logger.info(
                "another worker claimed the run; this one stops driving it",
                metadata: state.logMetadata.merging(["ledger.worker": "\(state.worker ?? "-")"]) { $1 })
        }
    }

    /// Decides on `input`, carries the decision out, and keeps advancing while decisions append events. Returns the
    /// decider's refusal of `input`, if it refused it.
    @discardableResult
    func process(_ input: RunCommand, _ loop: inout RunLoop) async -> String? {
        var input = input
        loop.unrecorded = false
        for _ in 0..<10_000 {
            if Task.isCancelled { return nil }
            let now = configuration.clock.now
            var steps = loop.decider.decide(loop.state, input, now: now)
            var appended = false
            var conflict = false
            if ledger.atomicBatches, let chain = Self.chain(steps, loop.state, loop.decider, now: now) {
                do {
                    try await appendChain(chain.events, time: chain.time, &loop)
                    appended = true
                    steps = []
                } catch let error as NATSError where error.isWrongLastSequence {
                    conflict = true
                    steps = []
                } catch is CancellationError {
                    loop.unrecorded = true
                    return nil
                } catch {
                    // Not stored, or not known to be (NATS away, an event too large, the batch refused): the same
                    // decision is carried out one event at a time, as without batches, which retries and records
                    // refusals; a batch that was stored after all makes its first append a conflict, and the run
                    // is decided again from the log (the chain started no effect).
                    logger.warning(
                        "could not append the run's events together; appending them one at a time",
                        metadata: loop.state.logMetadata.merging([LogKey.error: "\(error)"]) { $1 })
                }
            }
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
                        loop.unrecorded = true
                        return nil  // shutting down while NATS was away; the log and a restart carry on
                    } catch let error as UnstorableEvent {
                        // The event can never be stored: record its failure instead (a smaller event), and decide
                        // again from there; the actions that followed the refused event are not carried out.
                        guard let replacement = Self.replacement(for: body, error) else {
                            logger.error(
                                "an event of the run cannot be stored",
                                metadata: loop.state.logMetadata.merging([
                                    LogKey.eventType: "\(body.type)", LogKey.error: "\(error.detail)",
                                ]) { $1 })
                            return nil
                        }
                        logger.warning(
                            "an event of the run cannot be stored; recording a failure instead",
                            metadata: loop.state.logMetadata.merging([
                                LogKey.eventType: "\(body.type)", LogKey.error: "\(error.detail)",
                            ]) { $1 })
                        do {
                            try await append(replacement, &loop)
                            appended = true
                            break decision
                        } catch {
                            logger.error(
                                "could not record that an event of the run could not be stored",
                                metadata: loop.state.logMetadata.merging([
                                    LogKey.eventType: "\(body.type)", LogKey.error: "\(error)",
                                ]) { $1 })
                            return nil
                        }
                    } catch {
                        // Refused by JetStream for another reason (resources, say): try again later from the log's
                        // state; the run is never left waiting for nothing.
                        logger.error(
                            "JetStream refused an event of the run (or it could not be read back); deciding again in 5 s",
                            metadata: loop.state.logMetadata.merging([
                                LogKey.eventType: "\(body.type)", LogKey.error: "\(error)",
                            ]) { $1 })
                        schedule(configuration.clock.now.addingTimeInterval(5), &loop)
                        loop.unrecorded = true
                        return nil
                    }
                case .execute(let execution):
                    execute(execution, startedAt: configuration.clock.now, &loop)
                case .publishOutput(let output):
                    // An output that could not be published is not recorded as sent: decide again in 5 s (the
                    // decision publishes it again, and only then records what follows it).
                    if !(await publishOutput(output, &loop)) {
                        schedule(configuration.clock.now.addingTimeInterval(5), &loop)
                        loop.unrecorded = true
                        return nil
                    }
                case .deliver(let delivery):
                    deliver(delivery, &loop)
                case .wakeUp(let at):
                    schedule(at, &loop)
                case .refuse(let reason):
                    return reason
                }
            }
            if conflict {
                // Someone else appended to this run: fold it again from the log and decide anew on the same input.
                do {
                    if let folded = try await foldRunFromLog(loop.state.run_id) {
                        adopt(folded.state, head: folded.head, &loop)
                    }
                    if loop.handedOver { return nil }
                } catch {
                    logger.warning(
                        "could not re-read the run from the log",
                        metadata: loop.state.logMetadata.merging([LogKey.error: "\(error)"]) { $1 })
                    try? await Task.sleep(for: .milliseconds(200))
                }
                continue
            }
            input = .advance
            if !appended || loop.state.isSettled { return nil }
        }
        logger.error("the decider kept producing events; stopping this pass", metadata: loop.state.logMetadata)
        return nil
    }

    /// The most events a chain appends together.
    static let maxChain = 64

    /// The events of consecutive decisions that only append (local steps, whose outcome needs nothing from outside),
    /// decided ahead on the state they lead to: nil unless at least two events can go together. The chain ends
    /// before the first decision that does more than append (start a side effect, publish the output, wait): that
    /// one is decided again, from the log's state, once the chain is stored, so an effect is never started for a
    /// batch whose fate is unknown (a lost acknowledgement). Decisions never depend on where events are stored (only
    /// on what they say and `now`), and every event of a chain carries the same `time`, so the state the chain leads
    /// to is the one the log then folds to, and deciding ahead decides as one at a time would.
    static func chain(
        _ first: [RunAction], _ start: RunState, _ decider: RunDecider, now: Date
    ) -> (events: [LedgerEvent.Body], time: String)? {
        let time = Timestamp.now()  // as `Ledger.append` stamps an event
        var state = start
        var steps = first
        var events: [LedgerEvent.Body] = []
        var sequence = start.last_sequence
        while !steps.isEmpty, events.count + steps.count <= maxChain {
            var next = state
            var decided: [LedgerEvent.Body] = []
            for step in steps {
                // An event the log may refuse is left to the one-at-a-time path, which records why.
                guard case .append(let body) = step, body.payloadDepth <= Limits.stepOutputDepth else {
                    return events.count >= 2 ? (events, time) : nil
                }
                let event = LedgerEvent(
                    id: "", type: body.type, time: time, runid: next.run_id, flowid: next.flow_id, body: body)
                guard let folded = RunState.evolve(next, event, sequence: sequence + UInt64(decided.count) + 1)
                else { return events.count >= 2 ? (events, time) : nil }
                next = folded
                decided.append(body)
            }
            state = next
            sequence += UInt64(decided.count)
            events += decided
            if state.isSettled { break }
            steps = decider.decide(state, .advance, now: now)
        }
        return events.count >= 2 ? (events, time) : nil
    }

    /// Appends a chain's events together (`Ledger.appendAtomically`) and folds them, as `append` does each.
    func appendChain(_ bodies: [LedgerEvent.Body], time: String, _ loop: inout RunLoop) async throws {
        // Only what the append needs is read from the state (a copy held here would make each fold copy the steps).
        let (runID, flowID, flowVersion) = (loop.state.run_id, loop.state.flow_id, loop.state.flow_version)
        var events: [(body: LedgerEvent.Body, context: EventContext)] = []
        for body in bodies {
            events.append(
                (body, EventContext(correlationID: runID, traceparent: loop.traceparent(for: body, tracing: tracing))))
        }
        let appended = try await ledger.appendAtomically(
            events, run: runID, flowID: flowID, flowVersion: flowVersion,
            expectedLastSequence: loop.state.last_sequence, previous: loop.head, time: time)
        for (body, stored) in zip(bodies, appended) {
            loop.state.apply(stored.event, sequence: stored.sequence)
            loop.head = stored.link
            loop.recorded(body)
            eventsAppended.add(1, ordering: .relaxed)
            metrics.appended(body, flowID: flowID, definition: loop.decider.definition)
            recordOutcome(body, loop.decider.definition)
        }
    }

    func append(_ body: LedgerEvent.Body, _ loop: inout RunLoop) async throws {
        // Only what the append needs is read from the state: a copy of it held here would make the fold below copy
        // the run's steps.
        let (runID, flowID, flowVersion) = (loop.state.run_id, loop.state.flow_id, loop.state.flow_version)
        // What the engine produced itself (a transform's output, a rendered request or output) is held to the
        // same depth as a service's answer, so the projector can always read the event and the run's state back.
        let depth = body.payloadDepth
        if depth > Limits.stepOutputDepth {
            throw UnstorableEvent(
                problem: "too_deep", detail: "nested \(depth) levels deep; at most \(Limits.stepOutputDepth) are kept")
        }
        let traceparent = loop.traceparent(for: body, tracing: tracing)
        let appended: AppendedEvent
        do {
            appended = try await ledger.append(
                body, to: .run(id: runID, flowID: flowID, flowVersion: flowVersion),
                expectedLastSequence: loop.state.last_sequence, previous: loop.head,
                context: EventContext(correlationID: runID, traceparent: traceparent))
        } catch let error as NATSError where error.jetStreamError == .messageTooLarge {
            throw UnstorableEvent(problem: "too_large", detail: error.message)
        }
        loop.state.apply(appended.event, sequence: appended.sequence)
        loop.head = appended.link
        loop.recorded(body)
        eventsAppended.add(1, ordering: .relaxed)
        metrics.appended(body, flowID: flowID, definition: loop.decider.definition)
        recordOutcome(body, loop.decider.definition)
    }

    func execute(_ planned: StepExecution, startedAt: Date, _ loop: inout RunLoop) {
        var traced = planned
        // The attempt's span is its commands' parent (started with its first event, or now for an attempt re-sent
        // by a worker that took the run over).
        traced.traceparent =
            loop.attemptSpan(planned.target, attempt: planned.attempt, tracing: tracing).header
        let execution = traced
        let driver = loop.driver
        let executor = self.executor
        if execution.action != "http.request", let refusal = breakers.refuse(execution.action) {
            driver.send(
                .input(
                    .recordResult(
                        execution.target, attempt: execution.attempt,
                        result: .failure(StepError(kind: .circuitOpen, message: refusal, retryable: true)),
                        sourceSequence: nil), done: nil))
            return
        }
        loop.executions.removeAll { $0.isCancelled }
        loop.executions.append(
            Task {
                await executor.execute(execution, startedAt: startedAt) { result in
                    driver.send(
                        .input(
                            .recordResult(
                                execution.target, attempt: execution.attempt, result: result, sourceSequence: nil),
                            done: nil))
                }
            })
    }

    /// Publishes one of the run's outputs on `automation.output.produced`: the acknowledgement (id `<run>/ack`) or
    /// the final output (id `<run>/output`, whose place in the log the run keeps: its webhook posts those bytes).
    /// Returns false when it could not be published (NATS away): nothing after it in the decision is carried out.
    @discardableResult
    func publishOutput(_ output: FlowOutputProduced, _ loop: inout RunLoop) async -> Bool {
        let isFinal = output.kind != .ack
        // Published before (the read model saw it in the log): a run resumed after a crash, however much later
        // than the stream's duplicate window, never sends its reply twice.
        if isFinal, let sequence = loop.state.output_sequence {
            logger.info(
                "the run's output is already in the log; not publishing it again",
                metadata: loop.state.logMetadata.merging([LogKey.sequence: "\(sequence)"]) { $1 })
            return true
        }
        let suffix = isFinal ? LogAdmission.outputSuffix : "/ack"
        let event = CloudEvent(
            id: "\(output.run_id)\(suffix)", type: EventType.outputProduced, runid: output.run_id,
            flowid: output.flow_id, flowversion: output.flow_version, correlationid: output.run_id,
            traceparent: loop.segment.header, data: output)
        // A succeeded run publishes here only when its webhook needs the output in the log: it goes on from there.
        let afterwards = loop.state.status == .succeeded
        do {
            let sent = try await ledger.send(event, on: Subjects.outputProduced)
            if isFinal, let sequence = sent?.sequence { loop.state.output_sequence = sequence }
            if afterwards {
                let stored = loop.state.output_sequence != nil
                schedule(configuration.clock.now.addingTimeInterval(stored ? 0 : 5), &loop)
            }
            return true
        } catch let error as NATSError where error.jetStreamError == .messageTooLarge {
            // It can never be stored: the run's own record of the output gets the replacement that says so.
            logger.error(
                "the run's output is too large to publish",
                metadata: loop.state.logMetadata.merging([LogKey.error: "\(error)"]) { $1 })
            return true
        } catch {
            logger.error(
                "could not publish the run's output",
                metadata: loop.state.logMetadata.merging([LogKey.error: "\(error)"]) { $1 })
            if afterwards { schedule(configuration.clock.now.addingTimeInterval(5), &loop) }
            return false
        }
    }

    func schedule(_ at: Date, _ loop: inout RunLoop) {
        if let timer = loop.timer, timer.at <= at { return }
        loop.timer?.task.cancel()
        let driver = loop.driver
        let clock = configuration.clock
        let task = Task {
            do { try await clock.sleep(until: at) } catch { return }
            driver.send(.wake)
        }
        loop.timer = (at, task)
    }
}
