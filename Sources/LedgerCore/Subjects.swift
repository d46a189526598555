/// The subjects of SPEC §3 and the engine's own (documented in README "The log").
public enum Subjects {
    public static let assistantCommandIssued = "assistant.command.issued"
    public static let flowRunRequest = "automation.flow.run"
    public static let calendarSchedule = "calendar.command.schedule_event"
    public static let calendarUpdate = "calendar.command.update_event"
    public static let calendarCancel = "calendar.command.cancel_event"
    public static let calendarCommands = "calendar.command.>"
    public static let calendarEvents = "calendar.event.>"
    public static let calendarCreated = "calendar.event.created"
    public static let calendarUpdated = "calendar.event.updated"
    public static let calendarCanceled = "calendar.event.canceled"
    public static let calendarCreateFailed = "calendar.event.create_failed"
    public static let discoverySearch = "discovery.search"
    public static let outputProduced = "automation.output.produced"
    public static let notificationSend = "notifications.command.send"
    /// The notification service's answers (`Notification.Sent` / `Notification.Failed`), when it sends them.
    public static let notificationEvents = "notifications.event.>"
    public static let notificationSent = "notifications.event.sent"
    public static let notificationFailed = "notifications.event.failed"
    /// Events of other services (seed 002): any CloudEvents `type`, routed to the flows whose trigger names it
    /// (the default of `--event-subjects`).
    public static let events = "events.>"

    /// Every event of one run: the run's own subject, so `Nats-Expected-Last-Subject-Sequence` orders its decisions.
    public static func run(_ runID: String) -> String { "ledger.run.\(runID)" }
    public static let runPrefix = "ledger.run."
    /// Every event of one flow's definition (registration, versions, activation).
    public static func flow(_ flowID: String) -> String { "ledger.flow.\(flowID)" }
    public static let flowPrefix = "ledger.flow."
    /// Inbound messages that were refused, with the reason: one subject per refused message
    /// (`ledger.rejected.<sequence>`), so each refusal is recorded once however often the message is delivered.
    public static func rejected(_ sequence: UInt64) -> String { "ledger.rejected.\(sequence)" }
    /// Every refusal.
    public static let rejected = "ledger.rejected.>"
    /// Inbound events no handler took (no active flow is triggered by them), one subject each
    /// (`ledger.unhandled.<sequence>`), recorded once with the reason.
    public static func unhandled(_ sequence: UInt64) -> String { "ledger.unhandled.\(sequence)" }
    /// Log messages the read models skipped, one subject each (`ledger.skipped.<sequence>`), recorded once.
    public static func skipped(_ sequence: UInt64) -> String { "ledger.skipped.\(sequence)" }
    /// Requests and replies of request/reply subjects, recorded as events (`ledger.request.<kind>`).
    public static func requestRecord(_ kind: String) -> String { "ledger.request.\(kind)" }

    /// Token changes (`AccessTokenCreated`/`AccessTokenRevoked`), recorded by `ledgerflow tokens`.
    public static let tokenAudit = "ledger.audit.token"
    /// The artificial signal of a manual `live_run` (`ManualSignalIssued`), one subject per signal.
    public static func signal(_ signalID: String) -> String { "ledger.signal.\(signalID)" }

    /// The outcome of one nominal firing of a flow's schedule (`ledger.firing.<flow_id>.<nominal_ms>`), recorded once.
    public static func firing(_ flowID: String, nominalMillis: Int64) -> String {
        "ledger.firing.\(flowID).\(nominalMillis)"
    }
    public static let firingPrefix = "ledger.firing."
    /// Pauses and resumes of a flow's schedule (`ledger.schedule.<flow_id>`).
    public static func schedule(_ flowID: String) -> String { "ledger.schedule.\(flowID)" }
    public static let schedulePrefix = "ledger.schedule."

    /// The subjects the stream captures.
    public static let streamSubjects = [
        "ledger.>", assistantCommandIssued, calendarCommands, calendarEvents, outputProduced, notificationSend,
        notificationEvents,
    ]

    /// The inbound subjects the engine consumes besides the event subjects (`--event-subjects`, default `events.>`).
    public static let engineInbound = [assistantCommandIssued, calendarEvents, notificationEvents]
    /// Services' answers to the commands steps sent: read by the engine's answers consumer.
    public static let engineAnswers = [calendarEvents, notificationEvents]

    /// Whether `token` can be used as one subject token (flow ids, run ids, step ids).
    public static func isValidToken(_ token: String) -> Bool {
        !token.isEmpty && token.count <= 128
            && token.unicodeScalars.allSatisfy { s in
                (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "-" || s == "_"
            }
    }
}

/// The `type` strings of every event Ledgerflow reads or writes.
public enum EventType {
    // Inbound (SPEC §3)
    public static let assistantCommandIssued = "AssistantCommandIssued"
    public static let flowRunRequested = "FlowRunRequested"
    public static let calendarCreated = "CalendarEvent.Created"
    public static let calendarUpdated = "CalendarEvent.Updated"
    public static let calendarCanceled = "CalendarEvent.Canceled"
    public static let calendarCreateFailed = "CalendarEvent.CreateFailed"
    // Outbound (SPEC §3)
    public static let calendarSchedule = "CalendarCommand.ScheduleEvent"
    public static let calendarUpdate = "CalendarCommand.UpdateEvent"
    public static let calendarCancel = "CalendarCommand.CancelEvent"
    public static let outputProduced = "FlowOutputProduced"
    public static let notificationRequested = "NotificationRequested"
    // Inbound answers of the notification service (documented in README "Notifications")
    public static let notificationSent = "Notification.Sent"
    public static let notificationFailed = "Notification.Failed"
    // The engine's own
    public static let flowRegistered = "FlowRegistered"
    public static let flowVersionCreated = "FlowVersionCreated"
    public static let flowActivated = "FlowActivated"
    public static let flowDeactivated = "FlowDeactivated"
    public static let runStarted = "FlowRunStarted"
    public static let stepAttemptStarted = "StepAttemptStarted"
    public static let stepAttemptSucceeded = "StepAttemptSucceeded"
    public static let stepAttemptFailed = "StepAttemptFailed"
    public static let stepSkipped = "StepSkipped"
    public static let stepLateResultRecorded = "StepLateResultRecorded"
    public static let runSucceeded = "FlowRunSucceeded"
    public static let runFailed = "FlowRunFailed"
    public static let messageRejected = "InboundMessageRejected"
    public static let eventUnhandled = "InboundEventUnhandled"
    public static let logMessageSkipped = "LogMessageSkipped"
    public static let runCompensating = "FlowRunCompensating"
    public static let compensationStarted = "CompensationAttemptStarted"
    public static let compensationSucceeded = "CompensationAttemptSucceeded"
    public static let compensationFailed = "CompensationAttemptFailed"
    public static let runCancelRequested = "FlowRunCancelRequested"
    public static let runCancelled = "FlowRunCancelled"
    public static let runRedriven = "FlowRunRedriven"
    public static let runClaimed = "RunClaimed"
    public static let flowMarkedBroken = "FlowMarkedBroken"
    public static let tokenCreated = "AccessTokenCreated"
    public static let tokenRevoked = "AccessTokenRevoked"
    public static let manualSignalIssued = "ManualSignalIssued"
    public static let scheduleFiringStarted = "ScheduleFiringStarted"
    public static let scheduleFiringSkipped = "ScheduleFiringSkipped"
    public static let scheduleFiringBuffered = "ScheduleFiringBuffered"
    public static let schedulePaused = "SchedulePaused"
    public static let scheduleResumed = "ScheduleResumed"
    public static let runAcknowledged = "FlowRunAcknowledged"
    public static let deliveryStarted = "WebhookDeliveryAttemptStarted"
    public static let deliverySucceeded = "WebhookDeliveryAttemptSucceeded"
    public static let deliveryFailed = "WebhookDeliveryAttemptFailed"
    public static let deliveryRedriven = "WebhookDeliveryRedriven"
}
