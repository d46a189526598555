import Foundation
import LedgerCore
import LedgerProjections
import Testing

/// Logs written by earlier versions, every message dumped with its subject, `Nats-Msg-Id` and bytes:
/// - `Fixtures/log-2026-12-01.jsonl`: `ledgerflow dev` of commit 2f15383, the version before the hand-written codec,
///   running the README's demo, failures, compensations, a redrive, late answers and a manual run;
/// - `Fixtures/log-2026-12-04.jsonl`: `tools/capture-log` driving `ledgerflow dev` of commit 39b97cb, with every kind
///   of event the engine writes (cancels, claims, schedules, tokens, webhooks, lifecycle, broken flows, failed
///   compensations, rejected messages);
/// - `Fixtures/log-2026-12-05.jsonl`: the same of commit b05b826, with a message on a run's subject the read models
///   skip and its record besides (`CapturedLogTests` checks the read models that version stored from it).
/// Today's code reads every message of them as those versions did and writes every engine event back byte for byte.
@Suite struct OldLogTests {
    struct Message: Decodable {
        var stream: String?
        var seq: UInt64
        var subject: String
        var msg_id: String?
        var payload: String
        var bytes: [UInt8] { Array(Data(base64Encoded: payload) ?? Data()) }
    }

    static let logs = ["log-2026-12-01.jsonl", "log-2026-12-04.jsonl", "log-2026-12-05.jsonl"]

    /// The messages of the log stream (not those of the workers' key-value bucket, dumped beside them).
    public static func log(_ name: String) throws -> [Message] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Message.self, from: Data($0.utf8)) }
            .filter { ($0.stream ?? "LEDGER") == "LEDGER" }
    }

    @Test(arguments: logs) func everyMessageOfAnOldLogIsReadAndWrittenBackByteForByte(_ name: String) throws {
        let log = try Self.log(name)
        #expect(log.count >= 200)
        // Bytes that are not a CloudEvent are in the log only as they came in; the engine recorded each one (rejected
        // inbound, or skipped by the read models).
        var recorded: Set<UInt64> = []
        var unreadable: [UInt64] = []
        for message in log {
            guard let envelope = try? CloudEvent<JSONValue>(jsonBytes: message.bytes) else {
                unreadable.append(message.seq)
                continue
            }
            // What Ledgerflow wrote (its own sources) is written back as it was; other services' keys may come in
            // any order, which the envelope does not keep.
            if envelope.source.hasPrefix("ledgerflow/") {
                #expect(envelope.jsonBytes == message.bytes, "seq \(message.seq) on \(message.subject)")
            }
            if case .rejected(let e)? = (try? LedgerEvent(bytes: message.bytes))?.body, let seq = e.sequence {
                recorded.insert(seq)
            }
            // On the engine's own subjects, such bytes are skipped by the read models and recorded so.
            if envelope.type == EventType.logMessageSkipped, let seq = envelope.data["sequence"]?.numberValue {
                recorded.insert(UInt64(seq))
            }
        }
        #expect(unreadable.allSatisfy(recorded.contains), "not CloudEvents and not recorded: \(unreadable)")
    }

    @Test(arguments: logs) func everyEngineEventReadsAsBeforeAndIsWrittenAsItWasStored(_ name: String) throws {
        var types: Set<String> = []
        let log = try Self.log(name)
        // What the read models skipped, as the engine recorded it (LogMessageSkipped on ledger.skipped.<sequence>).
        var recorded: [UInt64: SkippedMessage] = [:]
        for message in log where message.subject.hasPrefix("ledger.skipped.") {
            let record = try CloudEvent<JSONValue>(jsonBytes: message.bytes)
            let data = try JSONDecoder().decode(SkippedMessage.self, from: Data(record.data.jsonBytes))
            #expect(record.type == EventType.logMessageSkipped, "seq \(message.seq)")
            #expect(message.subject == Subjects.skipped(data.sequence), "seq \(message.seq)")
            recorded[data.sequence] = data
        }
        var skipped = 0
        for message in log where message.subject.hasPrefix("ledger.") {
            let bytes = message.bytes
            let event: LedgerEvent
            switch LogAdmission.admit(subject: message.subject, payload: bytes, messageID: message.msg_id) {
            case .event(let admitted): event = admitted
            case .ignored: event = try LedgerEvent(bytes: bytes)  // records the models do not fold (signals, ...)
            case .skipped(let reason, _):
                // Skipped today as when it was stored: the record names it, its subject and the same reason.
                #expect(
                    recorded[message.seq]
                        == SkippedMessage(sequence: message.seq, subject: message.subject, reason: reason),
                    "seq \(message.seq) on \(message.subject) was skipped (\(reason)); recorded: \(String(describing: recorded[message.seq]))"
                )
                skipped += 1
                continue
            }
            // A request on `automation.flow.run` and its reply are recorded as they were, free-form JSON that no
            // model folds, and so are the records of skipped messages; the envelope test above writes them back.
            // Every other record is a typed event.
            if case .other = event.body {
                #expect(
                    message.subject == Subjects.requestRecord("flow_run")
                        || recorded.values.contains {
                            Subjects.skipped($0.sequence) == message.subject
                        }, "seq \(message.seq): unknown type")
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
            #expect(types.contains(type), "\(name) has no \(type)")
        }
        #expect(skipped == recorded.count, "every message skipped is recorded once, and nothing else is")
        guard name != "log-2026-12-01.jsonl" else { return }
        #expect(skipped > 0 || name == "log-2026-12-04.jsonl", "\(name) has no message the read models skip")
        for type in [
            EventType.flowVersionCreated, EventType.flowDeactivated, EventType.flowMarkedBroken,
            EventType.messageRejected, EventType.compensationFailed, EventType.runCancelRequested,
            EventType.runCancelled, EventType.runClaimed, EventType.tokenCreated, EventType.tokenRevoked,
            EventType.scheduleFiringStarted, EventType.scheduleFiringSkipped, EventType.scheduleFiringBuffered,
            EventType.schedulePaused, EventType.scheduleResumed, EventType.deliveryStarted,
            EventType.deliverySucceeded, EventType.deliveryFailed, EventType.deliveryRedriven,
        ] {
            #expect(types.contains(type), "\(name) has no \(type)")
        }
    }

    @Test func theRunsFoldedFromTheOldLogAreStoredAsFoundationStoredThem() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var runs: [String: RunState] = [:]
        for message in try Self.log("log-2026-12-01.jsonl") {
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
