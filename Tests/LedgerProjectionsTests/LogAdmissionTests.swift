import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// What the read models make of each message of the log (the projector's and the rebuild's poison policy).
@Suite struct LogAdmissionTests {
    func encoded(_ body: LedgerEvent.Body, runid: String? = nil, flowid: String? = nil) throws -> [UInt8] {
        try body.encode(
            id: "e", time: "2026-11-30T10:00:00.000Z", runid: runid, flowid: flowid, flowversion: nil,
            codec: EventCodec())
    }

    func started(_ runID: String) -> LedgerEvent.Body {
        .runStarted(
            FlowRunStarted(
                run_id: runID, flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
                trigger: RunTrigger(kind: .manual),
                actor: "a", input: [:], step_ids: ["s"], dedup_key: nil, message_id: nil, channel: nil))
    }

    @Test func aRunsOwnEventIsFolded() throws {
        let admission = LogAdmission.admit(
            subject: "ledger.run.r1", payload: try encoded(started("r1"), runid: "r1"), messageID: "e")
        guard case .event(let event) = admission else { Issue.record("expected an event, got \(admission)"); return }
        #expect(event.runid == "r1")
    }

    @Test func unreadableAndUnknownEventsOnARunsSubjectAreSkippedButMoveTheRun() throws {
        for payload in [
            [0x00, 0x01] as [UInt8], Array(#"{"id":"x","type":"Mystery","data":{}}"#.utf8), Array("[]".utf8),
        ] {
            let admission = LogAdmission.admit(subject: "ledger.run.r1", payload: payload, messageID: nil)
            guard case .skipped(let reason, let fold?) = admission else {
                Issue.record("expected a skip with a fold, got \(admission)"); continue
            }
            #expect(!reason.isEmpty)
            #expect(fold.runid == "r1")
            // The fold moves the run's position and changes nothing else.
            var sequence: UInt64 = 1
            let start = LedgerEvent(id: "e", type: EventType.runStarted, time: "t", runid: "r1", body: started("r1"))
            let before = try #require(RunState.evolve(nil, start, sequence: sequence))
            sequence = 9
            let after = try #require(RunState.evolve(before, fold, sequence: sequence))
            #expect(after.last_sequence == 9)
            var same = after
            same.last_sequence = before.last_sequence
            #expect(same == before)
        }
    }

    @Test func anEventNamingAnotherRunIsSkipped() throws {
        let admission = LogAdmission.admit(
            subject: "ledger.run.r1", payload: try encoded(started("r2"), runid: "r2"), messageID: nil)
        guard case .skipped(let reason, _) = admission else {
            Issue.record("expected a skip, got \(admission)"); return
        }
        #expect(reason.contains("r2"))
    }

    @Test func aFlowEventMustNameItsSubjectsFlow() throws {
        let recorded = LedgerEvent.Body.flowVersionRecorded(
            FlowVersionRecorded(flow_id: "other", version: 1, definition: [:], definition_hash: "h", actor: "a"))
        #expect(
            LogAdmission.admit(
                subject: "ledger.flow.mine", payload: try encoded(recorded, flowid: "other"), messageID: nil)
                != .ignored)
        if case .event = LogAdmission.admit(subject: "ledger.flow.mine", payload: try encoded(recorded), messageID: nil)
        {
            Issue.record("a definition of flow \"other\" was folded into flow \"mine\"")
        }
        let bad = String(repeating: "x", count: 600)
        guard case .skipped(_, nil) = LogAdmission.admit(subject: "ledger.flow.\(bad)", payload: [], messageID: nil)
        else {
            Issue.record("an over-long flow id in a subject must be skipped")
            return
        }
    }

    @Test func anOutputIsKnownByItsMessageIDWithoutDecoding() {
        guard
            case .event(let event) = LogAdmission.admit(
                subject: Subjects.outputProduced, payload: [0xFF], messageID: "r1/output")
        else {
            Issue.record("the output's Msg-Id names its run")
            return
        }
        #expect(event.body == .outputPublished)
        #expect(event.runid == "r1")
        #expect(LogAdmission.admit(subject: Subjects.outputProduced, payload: [], messageID: nil) == .ignored)
        #expect(
            LogAdmission.admit(subject: Subjects.assistantCommandIssued, payload: [0x00], messageID: "x") == .ignored)
    }

    @Test func aLongDedupKeyIsHashedBelowLMDBsKeyLimit() {
        let key = DedupModel.dedupKey(
            flowID: String(repeating: "f", count: 128), key: String(repeating: "k", count: 10_000))
        #expect(key.utf8.count < 511)
        #expect(key.hasSuffix(SHA256.hex(String(repeating: "k", count: 10_000))))
        #expect(DedupModel.dedupKey(flowID: "f", key: "short") == "f/short")
    }

    @Test func aStartTakingItsInputFromTheTriggerCarriesTheEntitiesOnce() {
        let trigger = RunTrigger(
            kind: .event, data: ["entities": ["title": "T", "big": .string(String(repeating: "b", count: 1000))]])
        let (stored, source) = FlowRunStarted.input(
            ["title": "T", "big": .string(String(repeating: "b", count: 1000)), "extra": 1], over: trigger)
        #expect(stored == ["extra": 1])
        #expect(source == FlowRunStarted.inputFromTriggerEntities)
        var started = FlowRunStarted(
            run_id: "r", flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live, trigger: trigger, actor: "a",
            input: stored,
            step_ids: [], dedup_key: nil, message_id: nil, channel: nil)
        started.input_source = source
        #expect(started.effectiveInput["big"] == .string(String(repeating: "b", count: 1000)))
        #expect(started.effectiveInput["extra"] == 1)
        // An input that overrides an entity is stored whole.
        #expect(FlowRunStarted.input(["title": "other"], over: trigger).source == nil)
    }
}
