import Foundation
import Testing

@testable import LedgerCore

/// W3C `traceparent` reading (strict: what is not a valid version-00 value is refused with the reason, and the
/// engine then starts a new trace), and what a run keeps of its trace.
@Suite struct TraceParentTests {
    static let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test func aValidTraceparentIsReadAndWrittenBackUnchanged() throws {
        let parent = try TraceParent.parse(Self.valid).get()
        #expect(parent.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(parent.parentID == "00f067aa0ba902b7")
        #expect(parent.flags == 1 && parent.sampled)
        #expect(parent.description == Self.valid)
        let unsampled = try TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").get()
        #expect(!unsampled.sampled)
    }

    @Test(arguments: [
        ("", "characters long"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "characters long"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "trace id is all zeros"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "parent id is all zeros"),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace id is not 32 lowercase hex"),
        ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "trace id is not 32 lowercase hex"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01", "parent id is not 16 lowercase hex"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", "flags are not two lowercase hex"),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff is invalid"),
        ("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version is not two lowercase hex"),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "separated by dashes"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", "version 00 traceparent is 55 characters"),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "other than '-' after its flags"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{0}", "55 characters"),
    ])
    func aMalformedTraceparentIsRefusedWithTheReason(_ text: String, _ reason: String) {
        guard case .failure(let problem) = TraceParent.parse(text) else {
            Issue.record("accepted \(text.debugDescription)")
            return
        }
        #expect(problem.reason.contains(reason), "\(problem.reason)")
    }

    @Test func aLaterVersionIsReadAsVersion00AndWrittenAs00() throws {
        let later = try TraceParent.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next")
            .get()
        #expect(later.description == Self.valid)
    }

    @Test func aHugeValueIsRefusedWithoutBeingRead() {
        let huge = Self.valid + String(repeating: "-a", count: 500_000)
        guard case .failure(let problem) = TraceParent.parse(huge) else {
            Issue.record("accepted a \(huge.utf8.count)-byte traceparent")
            return
        }
        #expect(problem.reason.contains("\(huge.utf8.count) bytes long"), "\(problem.reason)")
    }

    @Test func anInboundMessageWithoutATraceparentHasNone() {
        #expect(TraceParent.inbound(nil) == nil)
        #expect(TraceParent.inbound("") == nil)
        #expect(TraceParent.inbound(Self.valid) == .success(try! TraceParent.parse(Self.valid).get()))
        #expect((try? TraceParent.inbound("garbage")?.get()) == nil)
    }

    @Test func newTracesAndChildrenAreValidAndKeepTheTrace() throws {
        var seen = Set<String>()
        for _ in 0..<200 {
            let trace = TraceParent.newTrace()
            #expect(try TraceParent.parse(trace.description).get() == trace)
            #expect(trace.sampled)
            let child = trace.newChild()
            #expect(child.traceID == trace.traceID && child.flags == trace.flags)
            #expect(child.parentID != trace.parentID)
            #expect(try TraceParent.parse(child.description).get() == child)
            seen.insert(trace.traceID)
        }
        #expect(seen.count == 200, "trace ids repeat")
        let parent = try TraceParent.parse(Self.valid).get()
        #expect(
            parent.child(of: "1111111111111111").description
                == "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01")
        #expect(TraceParent.traceID(in: Self.valid) == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(TraceParent.traceID(in: "short") == nil)
        #expect(TraceParent.traceID(in: nil) == nil)
    }

    /// The run's trace is stored with it: a run folded from its `FlowRunStarted` (after a restart, on another
    /// worker) has the same traceparent, and it survives the read model's encoding.
    @Test func theRunsTraceIsFoldedFromItsStartAndStored() throws {
        var started = FlowRunStarted(
            run_id: "r1", flow_id: "f", flow_version: 1, definition_hash: "h", mode: .live,
            trigger: RunTrigger(kind: .manual, event_type: "ManualRun", data: [:]), actor: "a", input: [:],
            step_ids: ["s"], dedup_key: nil, message_id: nil, channel: nil)
        started.traceparent = Self.valid
        let event = LedgerEvent(
            id: "e1", type: EventType.runStarted, time: "2026-11-24T10:00:00Z", runid: "r1", flowid: "f",
            body: .runStarted(started))
        let state = try #require(RunState.evolve(nil, event, sequence: 7))
        #expect(state.traceparent == Self.valid)
        let stored = try JSONDecoder().decode(RunState.self, from: JSONEncoder().encode(state))
        #expect(stored.traceparent == Self.valid)
        let decoded = try JSONDecoder().decode(FlowRunStarted.self, from: JSONEncoder().encode(started))
        #expect(decoded.traceparent == Self.valid)
    }

    /// A traceparent is never a reason to refuse an inbound message, however long: it is ignored by its reader.
    @Test func anInboundMessageWithAnOverlongTraceparentIsAccepted() throws {
        let long = String(repeating: "x", count: Limits.identifierBytes * 4)
        let text =
            #"{"specversion":"1.0","id":"1","source":"s","type":"AssistantCommandIssued","traceparent":"\#(long)"}"#
        let event = try decodeInbound(Array(text.utf8), expectedTypes: ["AssistantCommandIssued"], codec: EventCodec())
            .get()
        #expect(event.traceparent == long)
        #expect((try? TraceParent.inbound(event.traceparent)?.get()) == nil)
    }
}
