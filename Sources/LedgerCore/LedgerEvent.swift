/// One event of the engine's own subjects, decoded once with a typed body.
public struct LedgerEvent: Decodable, Sendable, Equatable {
    /// The typed `data` of the event, by its `type`.
    public enum Body: Sendable, Equatable {
        case flowVersionRecorded(FlowVersionRecorded)
        case flowStatusChanged(FlowStatusChanged)
        case runStarted(FlowRunStarted)
        case stepAttemptStarted(StepAttemptStarted)
        case stepAttemptSucceeded(StepAttemptSucceeded)
        case stepAttemptFailed(StepAttemptFailed)
        case stepSkipped(StepSkipped)
        case stepLateResultRecorded(StepLateResultRecorded)
        case runSucceeded(FlowRunSucceeded)
        case runFailed(FlowRunFailed)
        case rejected(InboundMessageRejected)
        case unhandled(InboundEventUnhandled)
        case runCompensating(FlowRunCompensating)
        case compensationStarted(StepAttemptStarted)
        case compensationSucceeded(StepAttemptSucceeded)
        case compensationFailed(StepAttemptFailed)
        case runCancelRequested(FlowRunCancelRequested)
        case runCancelled(FlowRunCancelled)
        case runRedriven(FlowRunRedriven)
        case runClaimed(RunClaimed)
        case tokenChanged(AccessTokenChanged)
        case signalIssued(ManualSignal)
        case scheduleFiring(ScheduleFiring)
        case scheduleStateChanged(ScheduleStateChanged)
        case runAcknowledged(FlowRunAcknowledged)
        case deliveryStarted(WebhookDeliveryAttempt)
        case deliverySucceeded(WebhookDeliveryAttempt)
        case deliveryFailed(WebhookDeliveryAttempt)
        case deliveryRedriven(WebhookDeliveryRedriven)
        /// The run's `FlowOutputProduced` was stored (read from the output subject's `Nats-Msg-Id`, not decoded).
        case outputPublished
        /// A type this version does not fold (kept in the log, ignored by the models), or a message on a run's
        /// subject that could not be read: the run's position moves past it.
        case other
    }

    public var id: String
    public var type: String
    public var time: String
    public var runid: String?
    public var flowid: String?
    public var body: Body

    enum CodingKeys: String, CodingKey {
        case id, type, time, runid, flowid, schemaversion, data
    }

    public init(id: String, type: String, time: String, runid: String? = nil, flowid: String? = nil, body: Body) {
        self.id = id
        self.type = type
        self.time = time
        self.runid = runid
        self.flowid = flowid
        self.body = body
    }

    /// Reads an event of the log: `data` of an older `schemaversion` is upcast to the current shape first (the one
    /// place where old shapes are read); a newer one throws `EventSchemaError`.
    public init(from decoder: any Decoder) throws {
        EventCoding.countDecoded()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        type = try c.decode(String.self, forKey: .type)
        time = try c.decodeIfPresent(String.self, forKey: .time) ?? ""
        runid = try c.decodeIfPresent(String.self, forKey: .runid)
        flowid = try c.decodeIfPresent(String.self, forKey: .flowid)
        let version = try c.decodeIfPresent(Int.self, forKey: .schemaversion) ?? EventSchema.initialVersion
        let schema = decoder.userInfo[EventSchema.userInfoKey] as? EventSchema ?? .ledger
        let data = Payload(container: c, type: type, version: version, schema: schema)
        switch type {
        case EventType.flowRegistered, EventType.flowVersionCreated: body = .flowVersionRecorded(try data.read())
        case EventType.flowActivated, EventType.flowDeactivated: body = .flowStatusChanged(try data.read())
        case EventType.runStarted: body = .runStarted(try data.read())
        case EventType.stepAttemptStarted: body = .stepAttemptStarted(try data.read())
        case EventType.stepAttemptSucceeded: body = .stepAttemptSucceeded(try data.read())
        case EventType.stepAttemptFailed: body = .stepAttemptFailed(try data.read())
        case EventType.stepSkipped: body = .stepSkipped(try data.read())
        case EventType.stepLateResultRecorded: body = .stepLateResultRecorded(try data.read())
        case EventType.runSucceeded: body = .runSucceeded(try data.read())
        case EventType.runFailed: body = .runFailed(try data.read())
        case EventType.messageRejected: body = .rejected(try data.read())
        case EventType.eventUnhandled: body = .unhandled(try data.read())
        case EventType.runCompensating: body = .runCompensating(try data.read())
        case EventType.compensationStarted: body = .compensationStarted(try data.read())
        case EventType.compensationSucceeded: body = .compensationSucceeded(try data.read())
        case EventType.compensationFailed: body = .compensationFailed(try data.read())
        case EventType.runCancelRequested: body = .runCancelRequested(try data.read())
        case EventType.runCancelled: body = .runCancelled(try data.read())
        case EventType.runRedriven: body = .runRedriven(try data.read())
        case EventType.runClaimed: body = .runClaimed(try data.read())
        case EventType.flowMarkedBroken: body = .flowStatusChanged(try data.read())
        case EventType.tokenCreated, EventType.tokenRevoked: body = .tokenChanged(try data.read())
        case EventType.manualSignalIssued: body = .signalIssued(try data.read())
        case EventType.scheduleFiringStarted, EventType.scheduleFiringSkipped, EventType.scheduleFiringBuffered:
            body = .scheduleFiring(try data.read())
        case EventType.schedulePaused, EventType.scheduleResumed: body = .scheduleStateChanged(try data.read())
        case EventType.runAcknowledged: body = .runAcknowledged(try data.read())
        case EventType.deliveryStarted: body = .deliveryStarted(try data.read())
        case EventType.deliverySucceeded: body = .deliverySucceeded(try data.read())
        case EventType.deliveryFailed: body = .deliveryFailed(try data.read())
        case EventType.deliveryRedriven: body = .deliveryRedriven(try data.read())
        default: body = .other
        }
    }

    /// The `data` of an event being read, at its version: read directly when it is current, else upcast first.
    struct Payload {
        let container: KeyedDecodingContainer<CodingKeys>
        let type: String
        let version: Int
        let schema: EventSchema

        func read<T: Decodable>() throws -> T {
            if version == schema.currentVersion(of: type) { return try container.decode(T.self, forKey: .data) }
            let raw = try container.decodeIfPresent(JSONValue.self, forKey: .data) ?? .null
            let current = try schema.upcast(raw, type: type, from: version)
            return try T(from: TreeDecoder(value: current, codingPath: [CodingKeys.data]))
        }
    }
}

extension LedgerEvent.Body {
    /// How deeply the free-form parts of the event nest (inputs, trigger data, requests, outputs).
    public var payloadDepth: Int {
        switch self {
        case .runStarted(let e): return max(e.input.depth, e.trigger.data?.depth ?? 0, e.channel?.depth ?? 0)
        case .stepAttemptStarted(let e), .compensationStarted(let e): return e.request?.depth ?? 0
        case .stepAttemptSucceeded(let e), .compensationSucceeded(let e): return e.output.depth
        case .stepLateResultRecorded(let e): return e.output.depth
        case .runSucceeded(let e): return e.output.depth
        case .signalIssued(let e): return e.payload.depth
        default: return 0
        }
    }

    /// The event's `type`.
    public var type: String {
        switch self {
        case .flowVersionRecorded(let e):
            return e.version == 1 ? EventType.flowRegistered : EventType.flowVersionCreated
        case .flowStatusChanged(let e):
            switch e.status {
            case .active: return EventType.flowActivated
            case .broken: return EventType.flowMarkedBroken
            case .draft, .deprecated: return EventType.flowDeactivated
            }
        case .runStarted: return EventType.runStarted
        case .stepAttemptStarted: return EventType.stepAttemptStarted
        case .stepAttemptSucceeded: return EventType.stepAttemptSucceeded
        case .stepAttemptFailed: return EventType.stepAttemptFailed
        case .stepSkipped: return EventType.stepSkipped
        case .stepLateResultRecorded: return EventType.stepLateResultRecorded
        case .runSucceeded: return EventType.runSucceeded
        case .runFailed: return EventType.runFailed
        case .rejected: return EventType.messageRejected
        case .unhandled: return EventType.eventUnhandled
        case .runCompensating: return EventType.runCompensating
        case .compensationStarted: return EventType.compensationStarted
        case .compensationSucceeded: return EventType.compensationSucceeded
        case .compensationFailed: return EventType.compensationFailed
        case .runCancelRequested: return EventType.runCancelRequested
        case .runCancelled: return EventType.runCancelled
        case .runRedriven: return EventType.runRedriven
        case .runClaimed: return EventType.runClaimed
        case .tokenChanged(let e): return e.change == "revoked" ? EventType.tokenRevoked : EventType.tokenCreated
        case .signalIssued: return EventType.manualSignalIssued
        case .scheduleFiring(let e): return e.type
        case .scheduleStateChanged(let e): return e.paused ? EventType.schedulePaused : EventType.scheduleResumed
        case .runAcknowledged: return EventType.runAcknowledged
        case .deliveryStarted: return EventType.deliveryStarted
        case .deliverySucceeded: return EventType.deliverySucceeded
        case .deliveryFailed: return EventType.deliveryFailed
        case .deliveryRedriven: return EventType.deliveryRedriven
        case .outputPublished: return EventType.outputProduced
        case .other: return "Unknown"
        }
    }

    /// The step the event is about, when there is one.
    public var stepID: String? {
        switch self {
        case .stepAttemptStarted(let e): return e.step_id
        case .stepAttemptSucceeded(let e): return e.step_id
        case .stepAttemptFailed(let e): return e.step_id
        case .stepSkipped(let e): return e.step_id
        case .stepLateResultRecorded(let e): return e.step_id
        case .compensationStarted(let e): return e.step_id
        case .compensationSucceeded(let e): return e.step_id
        case .compensationFailed(let e): return e.step_id
        default: return nil
        }
    }

    /// Encodes the body as a CloudEvent (the hand-written coder: `eventBytes`).
    public func encode(
        id: String, time: String, runid: String?, flowid: String?, flowversion: Int?, correlationid: String? = nil,
        causationid: String? = nil, traceparent: String? = nil, prevhash: String? = nil, codec: EventCodec
    ) throws -> [UInt8] {
        eventBytes(
            id: id, time: time, runid: runid, flowid: flowid, flowversion: flowversion, correlationid: correlationid,
            causationid: causationid, traceparent: traceparent, prevhash: prevhash)
    }
}
