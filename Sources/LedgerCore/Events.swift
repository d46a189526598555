/// `data` of `AssistantCommandIssued` (SPEC §3).
public struct AssistantCommandIssued: Codable, Sendable, Equatable {
    /// The user who issued the command.
    public struct User: Codable, Sendable, Equatable {
        public var id: String
        public init(id: String) { self.id = id }
    }
    /// Where the command came from (and where the reply goes).
    public struct Channel: Codable, Sendable, Equatable {
        public var type: String
        public var conversation_id: String
        public init(type: String, conversation_id: String) {
            self.type = type
            self.conversation_id = conversation_id
        }
    }
    public var message_id: String
    public var intent: String
    public var entities: JSONValue
    public var user: User
    public var channel: Channel
    public var signal_id: String?

    public init(
        message_id: String, intent: String, entities: JSONValue, user: User, channel: Channel, signal_id: String? = nil
    ) {
        self.message_id = message_id
        self.intent = intent
        self.entities = entities
        self.user = user
        self.channel = channel
        self.signal_id = signal_id
    }
}

/// Whether a run calls other services (`live_run`) or simulates every side effect (`dry_run`).
public enum RunMode: String, Codable, Sendable {
    case live = "live_run"
    case dry = "dry_run"
}

/// What started a run.
public struct RunTrigger: Codable, Sendable, Equatable {
    /// How a run was started (the `kind` of its trigger).
    public enum Kind: String, Codable, Sendable {
        /// An inbound event matched the flow's trigger.
        case event
        /// Someone asked for the run (`automation.flow.run`, the API, the CLI).
        case manual
        /// The flow's schedule (cron or interval) came due.
        case schedule
    }

    public var kind: Kind
    public var event_type: String?
    public var event_id: String?
    /// The stream sequence of the triggering message, when it is in the log.
    public var sequence: UInt64?
    /// The triggering event's `data` (what `{{trigger...}}` reads).
    public var data: JSONValue?
    /// A scheduled run's nominal firing time (RFC 3339, UTC), also in `data` as `scheduled_at`.
    public var scheduled_at: String?

    public init(
        kind: Kind, event_type: String? = nil, event_id: String? = nil, sequence: UInt64? = nil, data: JSONValue? = nil
    ) {
        self.kind = kind
        self.event_type = event_type
        self.event_id = event_id
        self.sequence = sequence
        self.data = data
    }
}

/// `FlowRunStarted`: a run of a pinned flow version began, with its trigger and input.
public struct FlowRunStarted: Codable, Sendable, Equatable {
    public var run_id: String
    public var flow_id: String
    public var flow_version: Int
    public var definition_hash: String
    public var mode: RunMode
    public var trigger: RunTrigger
    public var actor: String
    public var input: JSONValue
    /// The steps of the pinned definition, in definition order.
    public var step_ids: [String]
    /// `signal_id` (else the inbound event id, else the manual idempotency key): one run per flow and key, ever.
    public var dedup_key: String?
    public var message_id: String?
    public var channel: JSONValue?
    /// `trigger.entities` (or `trigger.data`) when the run's input is the trigger's entities (or data): then `input`
    /// holds only the defaults applied on top of them, so the event does not carry the same payload twice.
    public var input_source: String?
    /// The worker that started the run and drives it (until a `RunClaimed` names another).
    public var worker: String?
    /// The actor's type (`ActorRef`); absent in events recorded before the audit trail.
    public var actor_type: String?
    /// The user a `run_as: user` flow acts for: the chat user who triggered it, or the user an operator named.
    public var on_behalf_of: String?
    /// The run's trace (a W3C `traceparent`): the triggering message's, else a new trace's. Every worker that drives
    /// the run continues this trace; absent in runs started before tracing.
    public var traceparent: String?

    /// The value of `input_source` for input taken from the trigger's `entities`.
    public static let inputFromTriggerEntities = "trigger.entities"
    /// The value of `input_source` for input taken from the trigger's whole `data` (another service's event).
    public static let inputFromTriggerData = "trigger.data"

    /// The run's whole input: `input`, or the trigger's entities (or data) with `input` on top.
    public var effectiveInput: JSONValue {
        let base: JSONValue?
        switch input_source {
        case Self.inputFromTriggerEntities?: base = trigger.data?["entities"]
        case Self.inputFromTriggerData?: base = trigger.data
        default: base = nil
        }
        guard case .object(var values)? = base else { return input }
        for (key, value) in input.objectValue ?? [:] { values[key] = value }
        return .object(values)
    }

    /// A start whose input came from the trigger's entities (a chat command) or its whole data (another service's
    /// event), storing only what differs from them.
    public static func input(_ input: JSONValue, over trigger: RunTrigger) -> (stored: JSONValue, source: String?) {
        guard case .object(let values) = input else { return (input, nil) }
        for (source, base) in [
            (inputFromTriggerEntities, trigger.data?["entities"]), (inputFromTriggerData, trigger.data),
        ] {
            guard case .object(let fields)? = base, fields.allSatisfy({ values[$0.key] == $0.value }) else {
                continue
            }
            return (.object(values.filter { fields[$0.key] != $0.value }), source)
        }
        return (input, nil)
    }

    public init(
        run_id: String, flow_id: String, flow_version: Int, definition_hash: String, mode: RunMode, trigger: RunTrigger,
        actor: String, input: JSONValue, step_ids: [String], dedup_key: String?, message_id: String?,
        channel: JSONValue?
    ) {
        self.run_id = run_id
        self.flow_id = flow_id
        self.flow_version = flow_version
        self.definition_hash = definition_hash
        self.mode = mode
        self.trigger = trigger
        self.actor = actor
        self.input = input
        self.step_ids = step_ids
        self.dedup_key = dedup_key
        self.message_id = message_id
        self.channel = channel
    }
}

/// `StepAttemptStarted` (and `CompensationAttemptStarted`): an attempt was sent, with its rendered request.
public struct StepAttemptStarted: Codable, Sendable, Equatable {
    public var step_id: String
    public var attempt: Int
    public var idempotency_key: String
    /// For steps answered by another service: the command's id, which its answer carries back.
    public var command_id: String?
    public var started_at: String
    /// The step's rendered `with`.
    public var request: JSONValue?

    public init(
        step_id: String, attempt: Int, idempotency_key: String, command_id: String?, started_at: String,
        request: JSONValue?
    ) {
        self.step_id = step_id
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.command_id = command_id
        self.started_at = started_at
        self.request = request
    }
}

/// `StepAttemptSucceeded` (and `CompensationAttemptSucceeded`): an attempt's output.
public struct StepAttemptSucceeded: Codable, Sendable, Equatable {
    public var step_id: String
    public var attempt: Int
    public var output: JSONValue
    public var started_at: String
    public var finished_at: String
    /// The stream sequence of the answer this outcome came from, when another service answered.
    public var source_sequence: UInt64?

    public init(
        step_id: String, attempt: Int, output: JSONValue, started_at: String, finished_at: String,
        source_sequence: UInt64? = nil
    ) {
        self.step_id = step_id
        self.attempt = attempt
        self.output = output
        self.started_at = started_at
        self.finished_at = finished_at
        self.source_sequence = source_sequence
    }
}

/// `StepLateResultRecorded`: the answer to an attempt the run had already abandoned (cancelled with its run, or timed
/// out) arrived after all, so its effect happened. Always recorded; when the step did not end up succeeding and
/// has a compensation, the run undoes the effect (once per step, whichever of its attempts answered late).
public struct StepLateResultRecorded: Codable, Sendable, Equatable {
    public var step_id: String
    public var attempt: Int
    public var output: JSONValue
    /// When the run recorded the answer.
    public var received_at: String
    /// The stream sequence of the answer, when another service answered.
    public var source_sequence: UInt64?
    /// The step has a compensation: the effect is undone unless the step succeeds after all.
    public var compensable: Bool

    public init(
        step_id: String, attempt: Int, output: JSONValue, received_at: String, source_sequence: UInt64? = nil,
        compensable: Bool
    ) {
        self.step_id = step_id
        self.attempt = attempt
        self.output = output
        self.received_at = received_at
        self.source_sequence = source_sequence
        self.compensable = compensable
    }
}

/// The stable name of a step error (`timeout`, `circuit_open`, `http_503`...). Open-ended: services answer with
/// their own kinds, which are kept as they came.
public struct StepErrorKind: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }

    /// No answer by the step's deadline.
    public static let timeout = StepErrorKind("timeout")
    /// The action's circuit breaker is open: the service failed too often lately.
    public static let circuitOpen = StepErrorKind("circuit_open")
    /// The step's `with` (or its compensation's) could not be rendered.
    public static let template = StepErrorKind("template")
    /// The attempt was abandoned because the run was cancelled.
    public static let cancelled = StepErrorKind("cancelled")
    /// The service could not be reached, or failed in a way a retry may cure.
    public static let unavailable = StepErrorKind("unavailable")
    /// The service refused the request.
    public static let refused = StepErrorKind("refused")
    /// The service answered with something that is not what it should send.
    public static let badReply = StepErrorKind("bad_reply")
    /// The step's rendered request is not what the action takes.
    public static let badRequest = StepErrorKind("bad_request")
    /// The action is not in the registry.
    public static let unknownAction = StepErrorKind("unknown_action")
    /// `emit` to a subject that is not allowed.
    public static let forbiddenSubject = StepErrorKind("forbidden_subject")
    /// `http.request` to an address that is not allowed.
    public static let forbiddenAddress = StepErrorKind("forbidden_address")
    /// `http.request` followed too many redirects.
    public static let tooManyRedirects = StepErrorKind("too_many_redirects")
    /// `http.request` was redirected somewhere it cannot follow.
    public static let badRedirect = StepErrorKind("bad_redirect")
    /// The calendar answered `CalendarEvent.CreateFailed`.
    public static let calendarCreateFailed = StepErrorKind("calendar_create_failed")
    /// The step's output is nested deeper than the log keeps.
    public static let outputTooDeep = StepErrorKind("output_too_deep")
    /// The step's output is larger than the log keeps.
    public static let outputTooLarge = StepErrorKind("output_too_large")
    /// The step's rendered request is nested deeper than the log keeps.
    public static let requestTooDeep = StepErrorKind("request_too_deep")
    /// The step's rendered request is larger than the log keeps.
    public static let requestTooLarge = StepErrorKind("request_too_large")

    /// An HTTP answer with a status that is not a success: `http_<status>`.
    public static func http(_ status: Int) -> StepErrorKind { StepErrorKind("http_\(status)") }
}

/// An error of a step attempt: a stable kind, a message for people, and whether a retry may help.
public struct StepError: Codable, Sendable, Equatable, Error {
    public var kind: StepErrorKind
    public var message: String
    public var retryable: Bool

    public init(kind: StepErrorKind, message: String, retryable: Bool) {
        self.kind = kind
        self.message = message
        self.retryable = retryable
    }
}

/// `StepAttemptFailed` (and `CompensationAttemptFailed`): an attempt's error, and when the next one is due.
public struct StepAttemptFailed: Codable, Sendable, Equatable {
    public var step_id: String
    public var attempt: Int
    public var error: StepError
    public var started_at: String
    public var finished_at: String
    /// When the next attempt is due; absent when the step has failed for good.
    public var retry_at: String?
    public var source_sequence: UInt64?

    public init(
        step_id: String, attempt: Int, error: StepError, started_at: String, finished_at: String, retry_at: String?,
        source_sequence: UInt64? = nil
    ) {
        self.step_id = step_id
        self.attempt = attempt
        self.error = error
        self.started_at = started_at
        self.finished_at = finished_at
        self.retry_at = retry_at
        self.source_sequence = source_sequence
    }
}

/// `StepSkipped`: a step that will not run (its condition is false, or everything it depends on was skipped).
public struct StepSkipped: Codable, Sendable, Equatable {
    public var step_id: String
    public var reason: String
    public init(step_id: String, reason: String) {
        self.step_id = step_id
        self.reason = reason
    }
}

/// Why a run failed (or was cancelled): a stable code, a message for people, and the step at fault.
public struct RunError: Codable, Sendable, Equatable {
    public var code: String
    public var message: String
    public var step_id: String?
    public init(code: String, message: String, step_id: String? = nil) {
        self.code = code
        self.message = message
        self.step_id = step_id
    }
}

/// `FlowRunSucceeded`: every step done; the run's rendered output.
public struct FlowRunSucceeded: Codable, Sendable, Equatable {
    public var output: JSONValue
    /// The URL the final output is to be delivered to (`output.webhook.url`), for a live run of a flow that has one:
    /// the run's webhook delivery starts here (absent otherwise, and in logs from before webhooks).
    public var webhook: String?
    public init(output: JSONValue, webhook: String? = nil) {
        self.output = output
        self.webhook = webhook
    }
}

/// `FlowRunFailed`: the run ended failed (after its compensations, if any).
public struct FlowRunFailed: Codable, Sendable, Equatable {
    public var error: RunError
    public init(error: RunError) { self.error = error }
}

/// The run failed (or was cancelled): the compensations of its completed steps run now, newest first.
public struct FlowRunCompensating: Codable, Sendable, Equatable {
    public var error: RunError
    public init(error: RunError) { self.error = error }
}

/// Someone asked to cancel the run: running steps are abandoned, queued ones skipped, compensations run.
public struct FlowRunCancelRequested: Codable, Sendable, Equatable {
    public var actor: String
    public var reason: String?
    /// The actor's type (`ActorRef`); absent in events recorded before the audit trail.
    public var actor_type: String?
    public init(actor: String, reason: String?, actor_type: String? = nil) {
        self.actor = actor
        self.reason = reason
        self.actor_type = actor_type
    }
}

/// `FlowRunCancelled`: the run ended cancelled, its compensations done.
public struct FlowRunCancelled: Codable, Sendable, Equatable {
    public var actor: String
    public init(actor: String) { self.actor = actor }
}

/// `RunClaimed`: a worker takes over driving a run whose worker stopped (its lease expired), or that no worker
/// owned. Appended at the run's expected last sequence, so of two workers claiming the same run one wins; the
/// winner re-sends the attempts in `in_flight` once, with their idempotency keys.
public struct RunClaimed: Codable, Sendable, Equatable {
    public var worker: String
    public var previous_worker: String?
    /// The attempts that were in flight when the run was claimed (`<step>` or `<step>#undo`).
    public var in_flight: [String]
    public var reason: String
    public init(worker: String, previous_worker: String?, in_flight: [String], reason: String) {
        self.worker = worker
        self.previous_worker = previous_worker
        self.in_flight = in_flight
        self.reason = reason
    }
}

/// A failed run is re-run from `from_step`: the steps in `reset_steps` run again; the others keep their results.
public struct FlowRunRedriven: Codable, Sendable, Equatable {
    public var actor: String
    public var from_step: String
    public var reset_steps: [String]
    /// The actor's type (`ActorRef`); absent in events recorded before the audit trail.
    public var actor_type: String?
    public init(actor: String, from_step: String, reset_steps: [String], actor_type: String? = nil) {
        self.actor = actor
        self.actor_type = actor_type
        self.from_step = from_step
        self.reset_steps = reset_steps
    }
}
