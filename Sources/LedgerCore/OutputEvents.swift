/// `FlowRunAcknowledged` (on the run's subject): the run's immediate acknowledgement (`output.ack`), rendered as the
/// run started. Recorded in every mode (a dry run's is marked dry like the rest of the run); a live run also sends it
/// as a `FlowOutputProduced` of kind `ack` just before recording it.
public struct FlowRunAcknowledged: Codable, Sendable, Equatable {
    /// The rendered text (absent when it could not be rendered).
    public var text: String?
    /// Why the template could not be rendered (nothing was sent then; the run goes on).
    public var error: String?

    public init(text: String?, error: String? = nil) {
        self.text = text
        self.error = error
    }
}

/// `WebhookDeliveryAttemptStarted`, `WebhookDeliveryAttemptSucceeded` and `WebhookDeliveryAttemptFailed` (on the
/// run's subject): one attempt to `POST` the run's final `FlowOutputProduced` to `output.webhook.url`. The secret is
/// never in it: only the URL, the idempotency key and where the posted bytes sit in the log.
public struct WebhookDeliveryAttempt: Codable, Sendable, Equatable {
    public var attempt: Int
    public var url: String
    /// The `Idempotency-Key` header: the same on every attempt and redrive of the run's delivery.
    public var idempotency_key: String
    /// The log sequence of the `FlowOutputProduced` whose stored bytes are the body.
    public var output_sequence: UInt64
    public var started_at: String
    public var finished_at: String?
    /// The receiver's HTTP status, when it answered.
    public var http_status: Int?
    public var error: StepError?
    /// When the next attempt is due; absent on a failed attempt when there is none (a dead letter).
    public var retry_at: String?

    public init(
        attempt: Int, url: String, idempotency_key: String, output_sequence: UInt64, started_at: String,
        finished_at: String? = nil, http_status: Int? = nil, error: StepError? = nil, retry_at: String? = nil
    ) {
        self.attempt = attempt
        self.url = url
        self.idempotency_key = idempotency_key
        self.output_sequence = output_sequence
        self.started_at = started_at
        self.finished_at = finished_at
        self.http_status = http_status
        self.error = error
        self.retry_at = retry_at
    }
}

/// `WebhookDeliveryRedriven`: an operator redrove a dead-lettered delivery; it is attempted again, with the same
/// idempotency key and a fresh retry budget.
public struct WebhookDeliveryRedriven: Codable, Sendable, Equatable {
    public var actor: String
    public var actor_type: String?

    public init(actor: String, actor_type: String? = nil) {
        self.actor = actor
        self.actor_type = actor_type
    }
}

/// The webhook delivery of a run's final output, as the run shows it (`delivery`).
public struct DeliveryRecord: Codable, Sendable, Equatable {
    public var url: String
    /// `QUEUED` (its first attempt or a retry is due), `RUNNING`, `SUCCEEDED` (delivered) or `FAILED` (a dead
    /// letter: attempts exhausted or a final refusal; redrivable).
    public var status: StepStatus
    public var idempotency_key: String?
    public var output_sequence: UInt64?
    public var attempts: [AttemptRecord]
    public var redrives: Int
    /// The first attempt after the last redrive: the retry budget counts from it.
    public var round_start: Int

    public init(url: String) {
        self.url = url
        self.status = .queued
        self.attempts = []
        self.redrives = 0
        self.round_start = 1
    }

    /// Still to be delivered: an attempt is due or running.
    public var isPending: Bool { status == .queued || status == .running }
    /// Given up on until an operator redrives it.
    public var isDeadLetter: Bool { status == .failed }
}
