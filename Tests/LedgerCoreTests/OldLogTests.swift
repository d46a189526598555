import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// A log written by the version before the hand-written codec (`Fixtures/log-2026-12-01.jsonl`: `ledgerflow dev` of
/// commit 2f15383 running the README's demo, failures, compensations, a redrive, late answers and a manual run;
/// every message dumped with its subject, `Nats-Msg-Id` and bytes). Today's code reads every message of it as that
/// version did and writes every engine event back byte for byte.
@Suite struct OldLogTests {
    struct Message: Decodable {
        var seq: UInt64
        var subject: String
        var msg_id: String?
        var payload: String
        var bytes: [UInt8] { Array(Data(base64Encoded: payload) ?? Data()) }
    }

    static func log() throws -> [Message] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/log-2026-12-01.jsonl")
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Message.self, from: Data($0.utf8)) }
    }

    @Test func everyMessageOfTheOldLogIsReadAndWrittenBackByteForByte() throws {
        let log = try Self.log()
        #expect(log.count >= 200)
        for message in log {
            let envelope = try CloudEvent<JSONValue>(jsonBytes: message.bytes)
            #expect(envelope.jsonBytes == message.bytes, "seq \(message.seq) on \(message.subject)")
        }
    }

    @Test func everyEngineEventReadsAsBeforeAndIsWrittenAsItWasStored() throws {
        var types: Set<String> = []
        for message in try Self.log() where message.subject.hasPrefix("ledger.") {
            let bytes = message.bytes
            let event: LedgerEvent
            switch LogAdmission.admit(subject: message.subject, payload: bytes, messageID: message.msg_id) {
            case .event(let admitted): event = admitted
            case .ignored: event = try LedgerEvent(bytes: bytes)  // records the models do not fold (signals, ...)
            case .skipped(let reason, _):
                Issue.record("seq \(message.seq) on \(message.subject) was skipped: \(reason)")
                continue
            }
            let reference = try JSONDecoder().decode(LedgerEvent.self, from: Data(bytes))
            #expect(event.body == reference.body && event.id == reference.id && event.time == reference.time)
            let envelope = try CloudEvent<JSONValue>(jsonBytes: bytes)
            let written = event.body.eventBytes(
                id: envelope.id, source: envelope.source, time: envelope.time ?? "", runid: envelope.runid,
                flowid: envelope.flowid,
                flowversion: envelope.flowversion, correlationid: envelope.correlationid,
                causationid: envelope.causationid, traceparent: envelope.traceparent, prevhash: envelope.prevhash)
            #expect(
                written == bytes,
                "seq \(message.seq) \(event.type):\nnow    \(String(decoding: written, as: UTF8.self))\nstored \(String(decoding: bytes, as: UTF8.self))"
            )
            types.insert(event.type)
        }
        for type in [
            EventType.runStarted, EventType.stepAttemptStarted, EventType.stepAttemptSucceeded,
            EventType.stepAttemptFailed, EventType.stepSkipped, EventType.runSucceeded, EventType.runFailed,
            EventType.runCompensating, EventType.compensationStarted, EventType.compensationSucceeded,
            EventType.runRedriven, EventType.stepLateResultRecorded, EventType.runAcknowledged,
            EventType.flowRegistered, EventType.flowActivated, EventType.manualSignalIssued, EventType.eventUnhandled,
        ] {
            #expect(types.contains(type), "the fixture has no \(type)")
        }
    }

    @Test func theRunsFoldedFromTheOldLogAreStoredAsFoundationStoredThem() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var runs: [String: RunState] = [:]
        for message in try Self.log() {
            guard
                case .event(let event) = LogAdmission.admit(
                    subject: message.subject, payload: message.bytes, messageID: message.msg_id),
                let key = RunStatusModel.key(for: event)
            else { continue }
            runs[key] = RunStatusModel.evolve(runs[key], event, sequence: message.seq)
        }
        #expect(runs.count >= 15)
        #expect(runs.values.contains { $0.status == .failed } && runs.values.contains { $0.status == .succeeded })
        for (id, run) in runs {
            let stored = run.jsonBytes
            #expect(stored == Array(try encoder.encode(run)), "run \(id)")
            #expect(try RunState(jsonBytes: stored) == run, "run \(id)")
        }
    }
}
