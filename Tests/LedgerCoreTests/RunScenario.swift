import Foundation
import LedgerCore
import Testing

/// given(events) / when(command) / then(actions) on the pure run decider: a run of one definition, folded from its
/// `FlowRunStarted` and the events given; `when` asks the decider; `then` compares the whole list of actions and
/// returns the run with the decision's events folded in, so a scenario can go on.
struct RunScenario {
    static let t0 = Date(timeIntervalSince1970: 1_795_000_000)
    static let runID = "r"

    let decider: RunDecider
    private(set) var state: RunState
    private var sequence: UInt64 = 1

    /// A run of `definition`, started at `t0` by an `AssistantCommandIssued` of user `u`.
    init(_ definition: FlowDefinition, mode: RunMode = .live) {
        decider = RunDecider(definition: definition)
        let started = FlowRunStarted(
            run_id: Self.runID, flow_id: definition.id, flow_version: 1, definition_hash: "h", mode: mode,
            trigger: RunTrigger(kind: .event, data: ["entities": ["title": "T", "go": false], "user": ["id": "u"]]),
            actor: "user:u", input: [:], step_ids: definition.steps.map(\.id), dedup_key: "sig", message_id: "m",
            channel: nil)
        let event = LedgerEvent(
            id: "e1", type: EventType.runStarted, time: Timestamp.format(Self.t0), runid: Self.runID,
            body: .runStarted(started))
        state = RunState.evolve(nil, event, sequence: 1)!
    }

    /// The run after `events` (each folded as the engine folds what it appended).
    func given(_ events: LedgerEvent.Body...) -> RunScenario { given(events) }

    func given(_ events: [LedgerEvent.Body]) -> RunScenario {
        var next = self
        for body in events {
            next.sequence += 1
            let event = LedgerEvent(
                id: "e\(next.sequence)", type: body.type, time: Timestamp.format(Self.t0), runid: Self.runID, body: body
            )
            next.state = RunState.evolve(next.state, event, sequence: next.sequence)!
        }
        return next
    }

    /// What the decider does with `command` at `now`.
    func when(_ command: RunCommand, at now: Date = RunScenario.t0) -> Decision {
        Decision(run: self, actions: decider.decide(state, command, now: now, random: { 0.5 }))
    }

    /// The decider's answer to one command.
    struct Decision {
        let run: RunScenario
        let actions: [RunAction]

        /// Expects exactly `expected`; returns the run with the appended events folded in.
        @discardableResult
        func then(_ expected: [RunAction], sourceLocation: SourceLocation = #_sourceLocation) -> RunScenario {
            #expect(actions == expected, sourceLocation: sourceLocation)
            return run.given(actions.compactMap { if case .append(let body) = $0 { body } else { nil } })
        }
    }
}

/// Events and actions of the run `r`, written the way the decider writes them.
enum Run {
    static let t0 = RunScenario.t0
    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }
    static func text(_ date: Date) -> String { Timestamp.format(date) }

    static func started(
        _ step: String, _ attempt: Int = 1, request: JSONValue?, at: Date = t0, key: String? = nil, remote: Bool = true
    ) -> LedgerEvent.Body {
        .stepAttemptStarted(
            StepAttemptStarted(
                step_id: step, attempt: attempt, idempotency_key: key ?? "r/\(step)",
                command_id: remote ? "r/\(step)/\(attempt)" : nil,
                started_at: text(at), request: request))
    }

    static func succeeded(
        _ step: String, _ attempt: Int = 1, output: JSONValue, at: Date = t0, finished: Date? = nil,
        source: UInt64? = nil
    )
        -> LedgerEvent.Body
    {
        .stepAttemptSucceeded(
            StepAttemptSucceeded(
                step_id: step, attempt: attempt, output: output, started_at: text(at),
                finished_at: text(finished ?? at), source_sequence: source))
    }

    static func failed(
        _ step: String, _ attempt: Int = 1, _ error: StepError, at: Date = t0, finished: Date? = nil,
        retryAt: Date? = nil
    ) -> LedgerEvent.Body {
        .stepAttemptFailed(
            StepAttemptFailed(
                step_id: step, attempt: attempt, error: error, started_at: text(at), finished_at: text(finished ?? at),
                retry_at: retryAt.map(text)))
    }

    static func compensationStarted(
        _ step: String, _ attempt: Int = 1, request: JSONValue, at: Date = t0
    ) -> LedgerEvent.Body {
        .compensationStarted(
            StepAttemptStarted(
                step_id: step, attempt: attempt, idempotency_key: "r/\(step)~compensate",
                command_id: "r/\(step)~compensate/\(attempt)",
                started_at: text(at), request: request))
    }

    static func compensationSucceeded(
        _ step: String, _ attempt: Int = 1, output: JSONValue, at: Date = t0
    ) -> LedgerEvent.Body {
        .compensationSucceeded(
            StepAttemptSucceeded(
                step_id: step, attempt: attempt, output: output, started_at: text(at), finished_at: text(at)))
    }

    static func compensationFailed(
        _ step: String, _ attempt: Int = 1, _ error: StepError, at: Date = t0, finished: Date? = nil,
        retryAt: Date? = nil
    ) -> LedgerEvent.Body {
        .compensationFailed(
            StepAttemptFailed(
                step_id: step, attempt: attempt, error: error, started_at: text(at), finished_at: text(finished ?? at),
                retry_at: retryAt.map(text)))
    }

    /// The command the decider hands the engine for an attempt started at `at` with a 60 s timeout.
    static func execute(
        _ target: AttemptTarget, _ attempt: Int = 1, action: String, request: JSONValue, at: Date = t0,
        timeout: Double = 60,
        key: String? = nil
    ) -> RunAction {
        .execute(
            StepExecution(
                runID: "r", target: target, attempt: attempt, action: action, request: request,
                idempotencyKey: key ?? "r/\(target.wireID)", commandID: "r/\(target.wireID)/\(attempt)",
                deadline: at.addingTimeInterval(timeout), onBehalfOf: ["user_id": "u"]))
    }

    static let denied = StepError(kind: StepErrorKind("denied"), message: "no", retryable: false)
    static let busy = StepError(kind: StepErrorKind("busy"), message: "try later", retryable: true)
}
