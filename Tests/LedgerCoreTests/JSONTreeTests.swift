import Foundation
import LedgerCore
import Testing

@Suite struct JSONTreeTests {
    @Test(arguments: [
        #"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
        #"[-12, 3.25, 1e3, -0.5E-2, 0, 123456789012345678]"#,
        #"{"s":"quote \" backslash \\ slash \/ tab \t nl \n é \u00e9 \ud83d\ude00 end"}"#,
        #"  {"empty":{},"list":[],"nested":[[1],[{"x":[]}]]}  "#,
        #""just a string""#,
        #"{"a":{"b":1,"c":{"d":2,"e":[{"f":3},{"g":{}}]}},"h":4,"i":{"j":[{"k":{"l":5}}]},"m":6}"#,
        #"[{"a":1},{"a":2,"b":{"a":3}},{},{"c":[{}]}]"#,
    ])
    func parsesLikeFoundation(_ text: String) throws {
        let ours = try JSONTree.parse(Array(text.utf8))
        let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(ours == theirs)
    }

    /// A key given twice keeps its last value, as in Foundation's decoder, at any depth.
    @Test func aRepeatedKeyKeepsItsLastValue() throws {
        let text = #"{"a":1,"b":{"x":1,"x":{"y":2},"z":3},"a":2,"c":[{"k":1,"k":2}]}"#
        let ours = try JSONTree.parse(Array(text.utf8))
        #expect(ours == ["a": 2, "b": ["x": ["y": 2], "z": 3], "c": [["k": 2]]])
    }

    @Test(arguments: ["{", "[1,]", #"{"a" 1}"#, "tru", #""open"#, "{} x", #"{"a":1,}"#])
    func refusesBrokenJSON(_ text: String) {
        #expect(throws: (any Error).self) { try JSONTree.parse(Array(text.utf8)) }
    }

    @Test func decodesEventsAsJSONDecoderDoes() throws {
        let body = LedgerEvent.Body.stepAttemptFailed(
            StepAttemptFailed(
                step_id: "s", attempt: 2,
                error: StepError(kind: StepErrorKind("k"), message: "m \"quoted\"", retryable: true),
                started_at: "a", finished_at: "b", retry_at: nil, source_sequence: 42))
        let payload = try body.encode(id: "i", time: "t", runid: "r", flowid: "f", flowversion: 1, codec: EventCodec())
        let ours = try JSONTree.decode(LedgerEvent.self, from: payload)
        let theirs = try JSONDecoder().decode(LedgerEvent.self, from: Data(payload))
        #expect(ours.body == theirs.body)
        #expect(ours.runid == "r")
        let started = LedgerEvent.Body.runStarted(
            FlowRunStarted(
                run_id: "r", flow_id: "f", flow_version: 3, definition_hash: "h", mode: .dry,
                trigger: RunTrigger(kind: .event, sequence: 9, data: ["x": [1, "y"]]),
                actor: "a", input: ["n": 1.5], step_ids: ["a", "b"], dedup_key: nil, message_id: "m", channel: nil))
        let startedPayload = try started.encode(
            id: "i", time: "t", runid: "r", flowid: "f", flowversion: 3, codec: EventCodec())
        #expect(try JSONTree.decode(LedgerEvent.self, from: startedPayload).body == started)
    }
}
