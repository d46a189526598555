import Foundation
public import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging
import Synchronization

extension Engine {
    /// Starts a run of an active flow on request (HTTP, NATS or CLI), as a manual signal with `actor`.
    public func requestRun(
        flowID: String, input: JSONValue, mode: RunMode, idempotencyKey: String?, actor: String
    ) async throws -> RunStart {
        guard let record = try store.flow(flowID) else { throw EngineError.flowNotFound(flowID) }
        guard record.status == .active, let version = record.active_version,
            let (definition, hash) = try catalog.pinned(flowID: flowID, version: version)
        else {
            throw EngineError.invalidState(
                "flow \(flowID) is \(record.status.rawValue); only active flows run (activate it first)")
        }
        let values = definition.applyingInputDefaults(to: input)
        let problems = definition.inputProblems(values)
        if !problems.isEmpty { throw EngineError.badRequest(problems.joined(separator: "; ")) }
        // The inputs stand where a chat command's entities stand, so `{{trigger.entities.<name>}}` renders the same
        // for a manual run; the start carries them once (the input is taken from the trigger).
        let trigger = RunTrigger(
            kind: .manual, event_type: nil, event_id: nil, sequence: nil,
            data: .object(["entities": values, "actor": .string(actor)]))
        return try await startRun(
            flowID: flowID, version: version, definition: definition, definitionHash: hash, trigger: trigger,
            input: values,
            inputFromTrigger: true,
            mode: mode, actor: actor,
            dedupKey: idempotencyKey.map { "manual:\($0)" }, messageID: nil, channel: nil)
    }

    /// Appends `FlowRunStarted` as the first event of the run's subject and starts driving the run. With a dedup
    /// key, the run id is derived from flow and key, so a second start is refused by the log itself (the subject
    /// already has a message), however long ago the first one was.
    public func startRun(
        flowID: String, version: Int, definition: FlowDefinition, definitionHash: String, trigger: RunTrigger,
        input: JSONValue,
        inputFromTrigger: Bool = false, mode: RunMode,
        actor: String, dedupKey: String?, messageID: String?, channel: JSONValue?
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
        if inputFromTrigger {
            (started.input, started.input_source) = FlowRunStarted.input(input, over: trigger)
        }
        let id = EventID.make()
        let address = EventAddress.run(id: runID, flowID: flowID, flowVersion: version)
        let appended: AppendedEvent
        do {
            appended = try await ledger.append(
                .runStarted(started), to: address, expectedLastSequence: 0, id: id,
                context: EventContext(correlationID: runID, causationID: trigger.event_id))
        } catch let error as NATSError where error.isWrongLastSequence {
            // The run's subject has a first event. When it is this very event (a retried publish whose first try
            // landed but whose acknowledgement was lost), the run is ours to drive; otherwise it is a repeat.
            guard let first = try await ledger.firstMessage(on: address.subject) else {
                throw StartRefused(
                    reason: "the run's subject \(address.subject) refused its first event but holds none")
            }
            let existing = try? JSONTree.decode(LedgerEvent.self, from: first.payload)
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
        _ = launch(state: state, head: appended.link, definition: definition, resume: false)
        return .started(runID: runID, sequence: appended.sequence)
    }
}
