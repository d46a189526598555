import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// Every event Ledgerflow writes carries `schemaversion`; an older one is upcast where the log is read, a newer one is
/// skipped with its reason rather than misread.
@Suite struct EventSchemaTests {
    static let started = LedgerEvent.Body.runStarted(
        FlowRunStarted(
            run_id: "r1", flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
            trigger: RunTrigger(kind: .manual),
            actor: "a", input: [:], step_ids: ["s"], dedup_key: nil, message_id: nil, channel: nil))

    /// The event as written today, as a JSON object (to take attributes away or change them).
    static func written() throws -> [String: JSONValue] {
        let bytes = try started.encode(
            id: "e", time: "2026-11-30T10:00:00.000Z", runid: "r1", flowid: "f", flowversion: 1, codec: EventCodec())
        return try #require(try JSONTree.decode(JSONValue.self, from: bytes).objectValue)
    }

    static func admit(_ event: [String: JSONValue]) throws -> LogAdmission {
        LogAdmission.admit(
            subject: "ledger.run.r1", payload: try EventCodec().encode(JSONValue.object(event)), messageID: "e")
    }

    @Test func everyEventLedgerflowWritesCarriesItsSchemaVersion() throws {
        #expect(try Self.written()[EventSchema.attribute] == 1)
        let command = try JSONTree.decode(
            JSONValue.self,
            from: try EventCodec().encode(CloudEvent(type: EventType.calendarSchedule, data: JSONValue.null)))
        #expect(command[EventSchema.attribute] == 1)
    }

    @Test func anEventWithoutTheAttributeReadsAsVersionOne() throws {
        var event = try Self.written()
        event[EventSchema.attribute] = nil
        guard case .event(let read) = try Self.admit(event) else {
            Issue.record("an event without schemaversion was not folded")
            return
        }
        #expect(read.body == Self.started)
    }

    @Test func anEventOfANewerVersionIsSkippedWithItsReasonAndMovesTheRun() throws {
        var event = try Self.written()
        event[EventSchema.attribute] = 2
        // A newer shape this version cannot know: read as version 1 it would decode, and be wrong.
        guard case .skipped(let reason, let fold?) = try Self.admit(event) else {
            Issue.record("an event of a newer schema version was not skipped")
            return
        }
        #expect(
            reason
                == "FlowRunStarted is of schemaversion 2, newer than this Ledgerflow reads (1): skipped rather than misread; a newer Ledgerflow reads it"
        )
        #expect(fold.runid == "r1")
        event[EventSchema.attribute] = 0
        guard case .skipped(let invalid, _) = try Self.admit(event) else {
            Issue.record("an event of schema version 0 was not skipped")
            return
        }
        #expect(invalid.contains("not a version"))
    }

    @Test func anOlderShapeIsUpcastToTheCurrentOne() throws {
        // A schema where FlowRunSucceeded is at version 2 and version 1 called its output `result`.
        let schema = EventSchema(
            current: [EventType.runSucceeded: 2],
            upcasters: [
                EventType.runSucceeded: { data, version in
                    guard version == 1, case .object(var fields) = data else { return data }
                    fields["output"] = fields.removeValue(forKey: "result")
                    return .object(fields)
                }
            ])
        #expect(try schema.upcast(["result": "ok"], type: EventType.runSucceeded, from: 1) == ["output": "ok"])
        #expect(try schema.upcast(["output": "ok"], type: EventType.runSucceeded, from: 2) == ["output": "ok"])
        #expect(throws: EventSchemaError.self) { try schema.upcast([:], type: EventType.runSucceeded, from: 3) }
        // Where the log is read: a version 1 event of that type reads in the current shape.
        let old =
            #"{"id":"e","type":"FlowRunSucceeded","time":"t","runid":"r1","schemaversion":1,"data":{"result":"ok"}}"#
        let decoder = JSONDecoder()
        decoder.userInfo[EventSchema.userInfoKey] = schema
        #expect(
            try decoder.decode(LedgerEvent.self, from: Data(old.utf8)).body
                == .runSucceeded(FlowRunSucceeded(output: "ok")))
        #expect(throws: (any Error).self) { try JSONDecoder().decode(LedgerEvent.self, from: Data(old.utf8)) }
        // The hand-written reader (the one the projector uses) upcasts the same way.
        #expect(
            try LedgerEvent(bytes: Array(old.utf8), schema: schema).body
                == .runSucceeded(FlowRunSucceeded(output: "ok")))
        #expect(throws: (any Error).self) { try LedgerEvent(bytes: Array(old.utf8)) }
        let newer = old.replacingOccurrences(of: #""schemaversion":1"#, with: #""schemaversion":3"#)
        #expect(throws: EventSchemaError.self) { try LedgerEvent(bytes: Array(newer.utf8), schema: schema) }
        // Ledgerflow's own schema: every type at version 1, read as written.
        #expect(EventSchema.currentVersion(of: EventType.runStarted) == 1)
        #expect(try EventSchema.ledger.upcast(["x": 1], type: EventType.runStarted, from: 1) == ["x": 1])
    }
}
