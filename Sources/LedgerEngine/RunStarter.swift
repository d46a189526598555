import Foundation
public import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging
import Synchronization

extension Engine {
    /// Starts a run of an active flow on request (tests and tools): `requestRun(_:)` with `actor` as recorded.
    public func requestRun(
        flowID: String, input: JSONValue, mode: RunMode, idempotencyKey: String?, actor: String
    ) async throws -> RunStart {
        try await requestRun(
            ManualRunRequest(
                flowID: flowID, input: input, mode: mode, idempotencyKey: idempotencyKey,
                actor: ActorRef.recorded(actor, type: nil)))
    }

    /// Starts a run of an active flow on request (HTTP, NATS, CLI), through the same path as a real signal (seed
    /// 004 rules 1, 2 and 6): an artificial signal with its own `signal_id`, the flow's trigger type and the shape of
    /// the trigger's event, marked `source: manual` with the actor; deduplicated by `signal_id` and flow like an
    /// inbound event; started by the same start code. A `live_run` appends the signal to the log first
    /// (`ledger.signal.<signal_id>`); a `dry_run` records only the run, marked dry, and performs nothing external.
    /// The same idempotency key gives the same signal id, hence the same run.
    public func requestRun(_ request: ManualRunRequest) async throws -> RunStart {
        let flowID = request.flowID
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard record.status == .active, let version = record.active_version,
            let (definition, hash) = try catalog.pinned(flowID: flowID, version: version)
        else {
            throw EngineError.invalidState(
                "flow \(flowID) is \(record.status.rawValue): only active automations can be executed (activate it first)"
            )
        }
        guard case .object = request.input else { throw EngineError.badRequest("input (context) must be an object") }
        let values = definition.applyingInputDefaults(to: request.input)
        let problems = definition.inputProblems(values)
        if !problems.isEmpty { throw EngineError.badRequest(problems.joined(separator: "; ")) }
        let onBehalfOf = try Self.onBehalfOf(definition, request)
        try requireReachableLog()
        let parent = inboundTrace(request.traceparent, from: "manual run of \(flowID) by \(request.actor.id)")
        let signal = ManualSignal.make(for: definition, request: request, entities: values, onBehalfOf: onBehalfOf)
        var trigger = RunTrigger(kind: .manual, event_type: signal.signal_type, data: signal.triggerData)
        if request.mode == .live {
            // The signal goes into the log first, once (its id derives from the signal's, and its subject must be
            // empty), so a retried request finds it there and starts the same run.
            let event = CloudEvent(
                id: DerivedID.uuid("signal/\(signal.signal_id)"), source: LedgerSource.api,
                type: EventType.manualSignalIssued, traceparent: parent?.description, data: signal)
            let subject = Subjects.signal(signal.signal_id)
            trigger.event_id = event.id
            do {
                trigger.sequence = try await ledger.send(event, on: subject, expectingEmptySubject: true, retry: .once)?
                    .sequence
            } catch let error as NATSError where error.isWrongLastSequence {
                // The same request (same idempotency key) recorded its signal before: start from that one.
                trigger.sequence = try await ledger.firstMessage(on: subject)?.sequence
            }
        }
        return try await startRun(
            from: signal, trigger: trigger, mode: request.mode, flow: (version, definition, hash), input: values,
            traceparent: parent)
    }

    /// Starts the run of a manual signal (the API's request, or the signal read back from the log by the inbound
    /// consumer): one run per signal and flow, by the same start code as an inbound event.
    func startRun(
        from signal: ManualSignal, trigger: RunTrigger, mode: RunMode,
        flow: (version: Int, definition: FlowDefinition, hash: String), input: JSONValue, traceparent: TraceParent?
    ) async throws -> RunStart {
        let actor = signal.metadata.source.actor
        return try await startRun(
            flowID: signal.flow_id, version: flow.version, definition: flow.definition, definitionHash: flow.hash,
            trigger: trigger, input: input, inputFromTrigger: true, mode: mode, actor: actor.id, actorType: actor.type,
            onBehalfOf: signal.metadata.on_behalf_of, dedupKey: signal.signal_id,
            // The signal of a chat flow carries a message id and a channel of its own: its outputs name them.
            messageID: signal.payload["message_id"]?.stringValue, channel: signal.payload["channel"],
            traceparent: traceparent)
    }

    /// Whose behalf a manual run acts on. A flow declared `run_as: user` needs the user named (`on_behalf_of`): it is
    /// never run as the operator who asked. A `service` flow acts as the service and takes no user.
    static func onBehalfOf(_ definition: FlowDefinition, _ request: ManualRunRequest) throws -> String? {
        let named = request.onBehalfOf.flatMap { $0.isEmpty ? nil : $0 }
        if let named, named.utf8.count > Limits.identifierBytes {
            throw EngineError.badRequest("on_behalf_of is longer than \(Limits.identifierBytes) bytes")
        }
        switch definition.run_as {
        case .user?:
            if let named { return named }
            if request.actor.type == "user" { return request.actor.id }
            throw EngineError.badRequest(
                "flow \(definition.id) runs as a user (run_as: user): name the user it acts for with on_behalf_of (the user's id); it is never run as the \(request.actor.type) \(request.actor.id)"
            )
        case .service?:
            if named != nil {
                throw EngineError.badRequest(
                    "flow \(definition.id) runs as the service (run_as: service): leave on_behalf_of out")
            }
            return nil
        case nil:
            return named
        }
    }

    /// Appends `FlowRunStarted` as the first event of the run's subject and starts driving the run. With a dedup
    /// key, the run id is derived from flow and key, so a second start is refused by the log itself (the subject
    /// already has a message), however long ago the first one was. `traceparent` is the triggering message's trace
    /// (checked, see `inboundTrace`): the run continues it, or starts a new trace without one.
    public func startRun(
        flowID: String, version: Int, definition: FlowDefinition, definitionHash: String, trigger: RunTrigger,
        input: JSONValue,
        inputFromTrigger: Bool = false, mode: RunMode,
        actor: String, actorType: String? = nil, onBehalfOf: String? = nil, dedupKey: String?, messageID: String?,
        channel: JSONValue?, traceparent: TraceParent? = nil
    ) async throws -> RunStart {
        let runID = dedupKey.map { DerivedID.uuid("\(flowID)/\($0)") } ?? EventID.make()
        if let dedupKey, let existing = try store.dedup(flowID: flowID, key: dedupKey) {
            return .duplicate(runID: existing)
        }
        var started = FlowRunStarted(
            run_id: runID, flow_id: flowID, flow_version: version, definition_hash: definitionHash, mode: mode,
            trigger: trigger, actor: actor, input: input, step_ids: definition.steps.map(\.id), dedup_key: dedupKey,
            message_id: messageID, channel: channel)
        started.worker = workerID
        started.actor_type = actorType
        started.on_behalf_of = onBehalfOf
        if inputFromTrigger {
            (started.input, started.input_source) = FlowRunStarted.input(input, over: trigger)
        }
        // The run's first span: a child of the triggering message's span, or the root of a new trace, whose context
        // is then the run's stored trace (so the spans of workers that take the run over nest under it).
        let segment = startSegment(
            runID: runID, flowID: flowID, flowVersion: version, parent: traceparent, resumed: false)
        started.traceparent = (traceparent ?? segment.context).description
        var launched = false
        defer {
            // Not started here (a repeat, or the start failed): the span covers nothing of a run.
            if !launched {
                segment.set("ledger.run.not_started", "true")
                segment.end()
            }
        }
        let id = EventID.make()
        let address = EventAddress.run(id: runID, flowID: flowID, flowVersion: version)
        let appended: AppendedEvent
        do {
            appended = try await ledger.append(
                .runStarted(started), to: address, expectedLastSequence: 0, id: id,
                context: EventContext(
                    correlationID: runID, causationID: trigger.event_id, traceparent: segment.header))
        } catch let error as NATSError where error.isWrongLastSequence {
            // The run's subject has a first event. When it is this very event (a retried publish whose first try
            // landed but whose acknowledgement was lost), the run is ours to drive; otherwise it is a repeat.
            guard let first = try await ledger.firstMessage(on: address.subject) else {
                throw StartRefused(
                    reason: "the run's subject \(address.subject) refused its first event but holds none")
            }
            let existing = try? LedgerEvent(bytes: first.payload)
            if let existing, existing.id == id {
                appended = AppendedEvent(
                    event: existing, sequence: first.sequence, duplicate: true,
                    link: ChainLink(sequence: first.sequence, payload: first.payload))
            } else if case .runStarted(let other)? = existing?.body, other.run_id == runID {
                return .duplicate(runID: runID)
            } else {
                // Something else was written there first: no run can start on this subject, and that is said.
                throw StartRefused(
                    reason:
                        "the run's subject \(address.subject) already holds a message that is not this run's start (log position \(first.sequence))"
                )
            }
        }
        // `appended.duplicate` here can only mean our own retried publish landed twice (the event id is new for this
        // start); another start of the same run is refused by the expected sequence above. Either way it is ours.
        guard let state = RunState.evolve(nil, appended.event, sequence: appended.sequence) else {
            return .duplicate(runID: runID)
        }
        runsStarted.add(1, ordering: .relaxed)
        metrics.runStarted(flowID: flowID)
        launched = true
        _ = launch(state: state, head: appended.link, definition: definition, resume: false, segment: segment)
        return .started(runID: runID, sequence: appended.sequence)
    }
}

/// A manual run asked for over HTTP, NATS or the CLI.
public struct ManualRunRequest: Sendable {
    public var flowID: String
    /// The context: the signal's payload (the entities of a chat command's shape).
    public var input: JSONValue
    public var mode: RunMode
    public var idempotencyKey: String?
    public var actor: ActorRef
    /// The user a `run_as: user` flow acts for.
    public var onBehalfOf: String?
    /// The caller's W3C `traceparent` (the HTTP request's header, the NATS request's CloudEvents attribute): the
    /// run continues that trace; a malformed one is logged and ignored.
    public var traceparent: String?

    public init(
        flowID: String, input: JSONValue, mode: RunMode, idempotencyKey: String?, actor: ActorRef,
        onBehalfOf: String? = nil, traceparent: String? = nil
    ) {
        self.flowID = flowID
        self.input = input
        self.mode = mode
        self.idempotencyKey = idempotencyKey
        self.actor = actor
        self.onBehalfOf = onBehalfOf
        self.traceparent = traceparent
    }
}

extension ManualSignal {
    /// The artificial signal of a manual run, in the shape of the flow's trigger event: a chat command's
    /// (`intent`, `entities`, `user`, `channel`) for an `AssistantCommandIssued` trigger, the context itself as the
    /// event's data for another event type, else `{entities}`.
    static func make(
        for definition: FlowDefinition, request: ManualRunRequest, entities: JSONValue, onBehalfOf: String?
    ) -> ManualSignal {
        let signalID =
            request.idempotencyKey.map {
                ManualSignal.signalID(flowID: definition.id, mode: request.mode, idempotencyKey: $0)
            } ?? EventID.make()
        let trigger = definition.trigger
        let type: String
        if let event = trigger?.event {
            type = event
        } else if trigger?.cron != nil || trigger?.interval != nil {
            type = "Schedule"
        } else {
            type = "ManualRun"
        }
        // Another service's event: the context is the event's data, as the flow's templates read it.
        var payload: [String: JSONValue] =
            trigger?.event != nil && type != EventType.assistantCommandIssued
            ? (entities.objectValue ?? [:]) : ["entities": entities]
        if type == EventType.assistantCommandIssued {
            if let intent = trigger?.intent { payload["intent"] = .string(intent) }
            // The user the run acts for, when there is one: never the operator who asked.
            if let onBehalfOf { payload["user"] = ["id": .string(onBehalfOf)] }
            payload["channel"] = ["type": "manual", "conversation_id": .string(signalID)]
            payload["message_id"] = .string(signalID)
        }
        return ManualSignal(
            signal_id: signalID, signal_type: type, flow_id: definition.id, payload: .object(payload),
            metadata: Metadata(
                source: Source(actor: request.actor), trace_id: EventID.make(), executed_at: Timestamp.now(),
                mode: request.mode == .dry ? "dry_run" : "live_run", on_behalf_of: onBehalfOf))
    }
}
