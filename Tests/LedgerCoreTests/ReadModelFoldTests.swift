import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// The flow and dedup read models as folds of the log.
@Suite struct ReadModelFoldTests {
    @Test func theFlowFoldKeepsEveryVersionAndTheStatus() {
        func event(_ body: LedgerEvent.Body) -> LedgerEvent {
            LedgerEvent(id: "x", type: body.type, time: "2026-11-23T10:00:00.000Z", flowid: "f", body: body)
        }
        var record = FlowVersionsModel.evolve(
            nil,
            event(
                .flowVersionRecorded(
                    FlowVersionRecorded(
                        flow_id: "f", version: 1, definition: ["id": "f"], definition_hash: "h1", actor: "a"))),
            sequence: 1)
        #expect(record?.status == .draft)
        record = FlowVersionsModel.evolve(
            record, event(.flowStatusChanged(FlowStatusChanged(flow_id: "f", version: 1, actor: "a", status: .active))),
            sequence: 2)
        record = FlowVersionsModel.evolve(
            record,
            event(
                .flowVersionRecorded(
                    FlowVersionRecorded(
                        flow_id: "f", version: 2, definition: ["id": "f", "name": "n"], definition_hash: "h2",
                        actor: "b", based_on: 1))), sequence: 3)
        #expect(record?.status == .active)
        #expect(record?.active_version == 1)
        #expect(record?.current_version == 2)
        #expect(record?.versions.map(\.definition_hash) == ["h1", "h2"])
        #expect(record?.history.map(\.change) == ["registered", "activated", "new_version"])
        #expect(record?.history.map(\.status_after) == [.draft, .active, .active])
        #expect(record?.last_sequence == 3)
    }

    @Test func theDedupFoldKeepsTheFirstRun() {
        func started(_ run: String) -> LedgerEvent {
            let body = LedgerEvent.Body.runStarted(
                FlowRunStarted(
                    run_id: run, flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
                    trigger: RunTrigger(kind: .event),
                    actor: "a", input: [:], step_ids: [], dedup_key: "sig", message_id: nil, channel: nil))
            return LedgerEvent(id: run, type: body.type, time: "t", runid: run, body: body)
        }
        #expect(DedupModel.key(for: started("r1")) == "f/sig")
        let first = DedupModel.evolve(nil, started("r1"), sequence: 1)
        #expect(DedupModel.evolve(first, started("r2"), sequence: 2) == "r1")
    }

    /// The dedup state (a run id, stored once per triggered run) is written by hand, byte for byte as
    /// JSONEncoder stored it, and read back.
    @Test func theDedupStateIsStoredByHandAsFoundationStoredIt() throws {
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // An encoder that would escape slashes: the hand-written path does not use it.
        let unused = JSONEncoder()
        for id in ["r1", "run-0123/abc", "quote\" back\\ \u{1} \n \t end", "ünï 😀 \u{7F}", ""] {
            let stored = try DedupModel.stored(id, encoder: unused)
            #expect(stored == Array(try foundation.encode(id)), "\(id)")
            let back = try stored.withUnsafeBytes { try DedupModel.state(stored: $0) }
            #expect(back == id)
        }
    }
}
