import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// The typed phase, kinds and statuses keep the JSON that the log, the read models and the API have always had.
@Suite struct StoredShapeTests {
    static func encoded(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static let attempt =
        #"{"attempt":1,"finished_at":"2026-11-23T10:00:01.000Z","started_at":"2026-11-23T10:00:00.000Z","status":"SUCCEEDED"}"#
    static let stepA =
        #"{"attempts":["# + attempt
        + #"],"command_id":"r/a/1","generation":0,"idempotency_key":"r/a","output":{"event_id":"e-a"},"status":"SUCCEEDED","step_id":"a"}"#
    static let cancelledStep =
        #"{"attempts":[{"attempt":1,"error":{"kind":"cancelled","message":"abandoned: the run was cancelled","retryable":false},"finished_at":"2026-11-23T10:00:02.000Z","started_at":"2026-11-23T10:00:01.000Z","status":"FAILED"}],"command_id":"r/c/1","generation":0,"idempotency_key":"r/c","status":"FAILED","step_id":"c"}"#

    /// A run as the read model stored it before the phase was typed: `status`, `phase` and `cancel_requested_by`.
    static func stored(status: String, phase: String?, cancelledBy: String?, error: String?, finished: Bool) -> String {
        var fields = [#""actor":"user:u""#]
        if let cancelledBy { fields.append(#""cancel_requested_by":"\#(cancelledBy)""#) }
        fields += [
            #""completion_order":["a"]"#, #""created_at":"2026-11-23T10:00:00.000Z""#, #""dedup_key":"sig""#,
            #""definition_hash":"h""#,
        ]
        if let error { fields.append(#""error":\#(error)"#) }
        if finished { fields.append(#""finished_at":"2026-11-23T10:00:03.000Z""#) }
        fields += [
            #""flow_id":"f""#, #""flow_version":1"#, #""input":{}"#, #""last_sequence":7"#, #""message_id":"m""#,
            #""mode":"live_run""#,
        ]
        if let phase { fields.append(#""phase":"\#(phase)""#) }
        fields += [
            #""redrives":0"#, #""run_id":"r""#, #""started_at":"2026-11-23T10:00:00.000Z""#, #""status":"\#(status)""#,
            #""steps":[\#(stepA),\#(cancelledStep)]"#, #""trigger":{"data":{"user":{"id":"u"}},"kind":"event"}"#,
            #""updated_at":"2026-11-23T10:00:02.000Z""#,
        ]
        return "{" + fields.joined(separator: ",") + "}"
    }

    static let cancelError = #"{"code":"cancelled","message":"cancelled by ops"}"#
    static let stepError = #"{"code":"denied","message":"step c failed","step_id":"c"}"#

    @Test(arguments: [
        (stored(status: "RUNNING", phase: nil, cancelledBy: nil, error: nil, finished: false), RunPhase.running),
        (
            stored(status: "RUNNING", phase: "compensating", cancelledBy: nil, error: stepError, finished: false),
            .compensating
        ),
        (
            stored(status: "RUNNING", phase: "compensating", cancelledBy: "ops", error: cancelError, finished: false),
            .cancelling(actor: "ops")
        ),
        (
            stored(status: "CANCELLED", phase: nil, cancelledBy: "ops", error: cancelError, finished: true),
            .cancelled(actor: "ops")
        ),
        (stored(status: "FAILED", phase: nil, cancelledBy: nil, error: stepError, finished: true), .failed),
        (stored(status: "SUCCEEDED", phase: nil, cancelledBy: nil, error: nil, finished: true), .succeeded),
    ])
    func aStoredRunReadsAsItsPhaseAndIsWrittenBackByteForByte(json: String, phase: RunPhase) throws {
        let state = try JSONTree.decode(RunState.self, from: Array(json.utf8))
        #expect(state.phase == phase)
        #expect(try Self.encoded(state) == json)
        #expect(try JSONDecoder().decode(RunState.self, from: Data(json.utf8)) == state)
    }

    @Test func theTypedValuesKeepTheirWireNames() throws {
        #expect(
            try Self.encoded([FlowStatus.draft, .active, .deprecated, .broken])
                == #"["draft","active","deprecated","broken"]"#)
        #expect(try Self.encoded([RunTrigger.Kind.event, .manual, .schedule]) == #"["event","manual","schedule"]"#)
        #expect(
            try Self.encoded(RetryPolicy(backoff: .fixed, non_retryable: [.http(404), .timeout]))
                == #"{"backoff":"fixed","non_retryable":["http_404","timeout"]}"#)
        #expect(try Self.encoded([RunAs.user, .service]) == #"["user","service"]"#)
        let error = StepError(kind: .outputTooDeep, message: "m", retryable: false)
        #expect(try Self.encoded(error) == #"{"kind":"output_too_deep","message":"m","retryable":false}"#)
        // A kind this version has no name for (a service's own) is kept as it came.
        let theirs = try JSONDecoder().decode(
            StepError.self, from: Data(#"{"kind":"quota_exceeded","message":"m","retryable":true}"#.utf8))
        #expect(theirs.kind == StepErrorKind("quota_exceeded"))
        #expect(try Self.encoded(theirs) == #"{"kind":"quota_exceeded","message":"m","retryable":true}"#)
        let change = FlowStatusChanged(flow_id: "f", version: 2, actor: "a", status: .deprecated)
        #expect(try Self.encoded(change) == #"{"actor":"a","flow_id":"f","status":"deprecated","version":2}"#)
    }

    @Test func unknownRunAsAndBackoffAreNamedWithEveryOtherProblem() {
        let json: JSONValue = [
            "id": "f", "trigger": ["event": "E"], "run_as": "robot",
            "defaults": ["retry": ["backoff": "linear"]],
            "steps": [["id": "s", "action": "nope", "retry": ["backoff": "random"]]],
        ]
        guard case .failure(let failure) = FlowValidator.validate(json) else {
            Issue.record("accepted an unknown run_as and backoff")
            return
        }
        let problems = Set(failure.problems.map(\.description))
        #expect(problems.contains(#"run_as: use "user" or "service""#))
        #expect(problems.contains(#"defaults.retry.backoff: use "exponential" or "fixed""#))
        #expect(problems.contains(#"steps[0].retry.backoff: use "exponential" or "fixed""#))
        #expect(
            failure.problems.contains { $0.path == "steps[0].action" }, "the rest of the definition is still checked")
        let valid: JSONValue = [
            "id": "f", "trigger": ["event": "E"], "run_as": "service", "defaults": ["retry": ["backoff": "fixed"]],
            "steps": [["id": "s", "action": "transform", "with": ["value": 1]]],
        ]
        guard case .success(let definition) = FlowValidator.validate(valid) else {
            Issue.record("refused a valid definition")
            return
        }
        #expect(definition.run_as == .service)
        #expect(definition.defaults?.retry?.backoff == .fixed)
    }
}
