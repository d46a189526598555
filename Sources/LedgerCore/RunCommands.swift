public import Foundation

/// What the engine asks of a run: the decider's input.
public enum RunCommand: Sendable, Equatable {
    /// Look at the run and do whatever is due: start ready steps, fire due retries, time out late steps, compensate,
    /// finish.
    case advance
    /// Another service (or the engine itself) answered an attempt of a step or of a step's compensation.
    case recordResult(AttemptTarget, attempt: Int, result: StepResult, sourceSequence: UInt64?)
    /// A service's answer (from the log at `sourceSequence`) to the command an attempt sent: applied as
    /// `recordResult` only when `service` is the one that attempt's action talks to, else ignored (the answer stays
    /// in the log), so no service's message can settle another's step.
    case recordAnswer(
        AttemptTarget, attempt: Int, result: StepResult, sourceSequence: UInt64, service: AnsweringService)
    /// Cancel the run: running steps are abandoned, queued ones skipped, completed ones compensated.
    case cancel(actor: String, reason: String?, actorType: String? = nil)
    /// Re-run a failed run from `fromStep` (default: the failed step), keeping the results of the steps before it.
    case redrive(actor: String, fromStep: String?, actorType: String? = nil)
    /// The webhook answered a delivery attempt of the run's final output (`success` with `{"status": <code>}`), or
    /// the attempt failed.
    case recordDelivery(attempt: Int, result: StepResult)
}

/// The service an inbound answer comes from.
public enum AnsweringService: String, Sendable, Equatable {
    /// `CalendarEvent.*`: answers `calendar.*` actions.
    case calendar
    /// `Notification.*`: answers `notify`.
    case notifications

    /// Whether this service answers commands of `action`.
    public func answers(_ action: String) -> Bool {
        switch self {
        case .calendar: return action.hasPrefix("calendar.")
        case .notifications: return action == "notify"
        }
    }
}

/// What an attempt is for: a step of the flow, or the compensation (undo) of a step.
public enum AttemptTarget: Sendable, Hashable, CustomStringConvertible {
    case step(String)
    case compensation(of: String)

    /// The step of the flow the attempt belongs to.
    public var stepID: String {
        switch self {
        case .step(let id), .compensation(of: let id): return id
        }
    }

    /// How the target is written in command ids, idempotency keys and a command's `stepid` (the wire format):
    /// the step id, or `<step id>~compensate`.
    public var wireID: String {
        switch self {
        case .step(let id): return id
        case .compensation(of: let id): return id + Self.compensationSuffix
        }
    }

    /// The target written as `wireID`.
    public init(wireID: String) {
        if wireID.hasSuffix(Self.compensationSuffix) {
            self = .compensation(of: String(wireID.dropLast(Self.compensationSuffix.count)))
        } else {
            self = .step(wireID)
        }
    }

    static let compensationSuffix = "~compensate"

    public var description: String {
        switch self {
        case .step(let id): return "step \(id)"
        case .compensation(of: let id): return "the compensation of step \(id)"
        }
    }
}

/// The outcome of one attempt: the step's output, or why it failed.
public enum StepResult: Sendable, Equatable {
    case success(JSONValue)
    case failure(StepError)
}

/// A step attempt for the engine to carry out.
public struct StepExecution: Sendable, Equatable {
    public var runID: String
    public var target: AttemptTarget
    public var attempt: Int
    public var action: String
    /// The rendered `with`.
    public var request: JSONValue
    public var idempotencyKey: String
    public var commandID: String
    public var deadline: Date
    public var onBehalfOf: JSONValue
    /// The `http.request` headers whose definition references `{{secrets.NAME}}`: the only places a secret is
    /// resolved (whatever run data renders elsewhere is sent as it is, so data can never name a secret).
    public var secretHeaders: [String] = []
    /// The attempt's trace context (W3C `traceparent`, the attempt's span as the parent), set by the engine when it
    /// carries the attempt out: every command, request and HTTP call of the attempt carries it.
    public var traceparent: String?

    public init(
        runID: String, target: AttemptTarget, attempt: Int, action: String, request: JSONValue, idempotencyKey: String,
        commandID: String, deadline: Date, onBehalfOf: JSONValue, secretHeaders: [String] = []
    ) {
        self.secretHeaders = secretHeaders
        self.runID = runID
        self.target = target
        self.attempt = attempt
        self.action = action
        self.request = request
        self.idempotencyKey = idempotencyKey
        self.commandID = commandID
        self.deadline = deadline
        self.onBehalfOf = onBehalfOf
    }
}

/// What the decider returns, in the order the engine must carry it out.
public enum RunAction: Sendable, Equatable {
    /// Append this event to the run's subject (with the run's expected last sequence), then fold it.
    case append(LedgerEvent.Body)
    /// Carry out a step attempt (its `StepAttemptStarted` was appended just before).
    case execute(StepExecution)
    /// Publish the run's output for the assistant (before the run's final event, so a crash repeats it rather than
    /// losing it).
    case publishOutput(FlowOutputProduced)
    /// `POST` the run's final output to its webhook (its `WebhookDeliveryAttemptStarted` was appended just before).
    case deliver(WebhookDelivery)
    /// Come back with `.advance` at this time (a retry's backoff or a step's deadline).
    case wakeUp(at: Date)
    /// The command cannot be carried out in the run's phase: tell whoever asked, and change nothing.
    case refuse(String)
}

/// A webhook delivery attempt for the engine to carry out: the stored bytes of the `FlowOutputProduced` at
/// `outputSequence`, posted to `url` and signed with the secret named `secret` (resolved only when it is sent).
public struct WebhookDelivery: Sendable, Equatable {
    public var runID: String
    public var attempt: Int
    public var url: String
    public var idempotencyKey: String
    public var outputSequence: UInt64
    /// The secret's name (`{{secrets.NAME}}` in the definition).
    public var secret: String
    /// How long the attempt may take.
    public var timeoutSeconds: Double

    public init(
        runID: String, attempt: Int, url: String, idempotencyKey: String, outputSequence: UInt64, secret: String,
        timeoutSeconds: Double
    ) {
        self.runID = runID
        self.attempt = attempt
        self.url = url
        self.idempotencyKey = idempotencyKey
        self.outputSequence = outputSequence
        self.secret = secret
        self.timeoutSeconds = timeoutSeconds
    }
}
