import Foundation
import LedgerCore
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

/// A flag set from a failpoint (on NATS's threads) and read by the test.
final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}

extension Integration {
    /// Integrity you can check (issue 16): every event on a run's or flow's subject names the hash of the one before
    /// it, and `Ledger.verify` (`ledgerflow verify`) finds a deleted, changed or forged message where it is.
    @Suite struct ChainTests {
        /// The `prevhash` of each message on `subject`, with the hash of the message before it.
        static func links(
            _ ledger: Ledger, _ subject: String
        ) async throws -> [(
            sequence: UInt64, prevhash: String?, previous: String?
        )] {
            var out: [(UInt64, String?, String?)] = []
            var previous: String?
            for message in try await ledger.read(subject: subject) {
                let event = try JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(message.payload))
                out.append((message.sequence, event.prevhash, previous))
                previous = EventChain.hash(of: message.payload)
            }
            return out
        }

        @Test func aRunsAndAFlowsEventsEachNameTheHashOfTheOneBefore() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "chain-1")
                let run = try #require(try await stack.waitForRuns(1).first)
                for subject in [Subjects.run(run.run_id), Subjects.flow("calendar-create-event")] {
                    let links = try await Self.links(stack.ledger, subject)
                    #expect(links.count >= 2, "\(subject)")
                    #expect(links.first?.prevhash == nil, "a subject's first event names no predecessor")
                    for link in links.dropFirst() {
                        #expect(
                            link.prevhash != nil && link.prevhash == link.previous, "\(subject) at \(link.sequence)")
                    }
                }
            }
        }

        /// Several runs (event-triggered and manual, one failing and compensating), two flows with versions: clean.
        @Test func verifyIsCleanOnALogOfSeveralRunsAndFlows() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                for i in 0..<4 { try stack.publishCommand(id: "clean-\(i)", suggestions: i % 2 == 0) }
                let (accepted, _) = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run",
                    ["input": ["title": "Standup", "start": "2026-11-25T09:00:00Z"], "on_behalf_of": "u-1"])
                #expect(accepted == 202)
                _ = try await stack.waitForRuns(5)
                var second = try #require(try Fixtures.flow("parallel-steps").objectValue)
                let (created, body) = try await stack.http("POST", "/automation/flows", .object(second))
                try #require(created == 201, "\(body.compactJSON)")
                second["version"] = 1
                second["name"] = "Prepare a meeting, second version"
                let (updated, answer) = try await stack.http(
                    "PUT", "/automation/flows/\(second["id"]!.stringValue!)", .object(second))
                #expect(updated == 200, "\(answer.compactJSON)")

                let verified = try await stack.ledger.verify()
                #expect(verified.isClean, "\(verified.problems.map(\.detail))")
                #expect(verified.unchained == 0)
                #expect(verified.subjects >= 7 && verified.linked >= 5 * 4)
                let filtered = try await stack.ledger.verify(subject: "ledger.run.>")
                #expect(filtered.isClean && filtered.subjects == 5, "\(filtered.summary)")
            }
        }

        @Test func aMessageDeletedFromTheMiddleOfARunIsFoundAtTheRunsNextEvent() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "deleted-1")
                try stack.publishCommand(id: "deleted-2")
                let run = try #require(try await stack.waitForRuns(2).first)
                let messages = try await stack.ledger.read(subject: Subjects.run(run.run_id))
                try #require(messages.count >= 3)
                let victim = messages[1].sequence
                let next = messages[2].sequence
                try #require(try await stack.ledger.api.deleteMessage(stream: stack.ledger.stream, sequence: victim))

                for verified in [
                    try await stack.ledger.verify(), try await stack.ledger.verify(subject: Subjects.run(run.run_id)),
                ] {
                    #expect(!verified.isClean)
                    let broken = verified.problems.filter { $0.kind == .brokenChain }
                    #expect(broken.count == 1, "\(verified.problems.map(\.detail))")
                    #expect(broken.first?.sequence == next)
                    #expect(broken.first?.subject == Subjects.run(run.run_id))
                    #expect(broken.first?.expected == EventChain.hash(of: messages[0].payload))
                    #expect(broken.first?.found == EventChain.hash(of: messages[1].payload))
                    #expect(broken.first?.detail.contains("sequence \(victim) between them was deleted") == true)
                    #expect(verified.problems.contains { $0.kind == .deleted && $0.sequence == victim })
                }
            }
        }

        @Test func aForgedEventOnARunsSubjectIsFound() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "forged-1")
                let run = try #require(try await stack.waitForRuns(1).first)
                let forged = CloudEvent(
                    id: "forged", type: EventType.runSucceeded, runid: run.run_id, flowid: run.flow_id,
                    flowversion: run.flow_version, prevhash: "sha256:" + String(repeating: "0", count: 64),
                    data: JSONValue.object(["output": ["text": "not what happened"]]))
                let sent = try #require(
                    try await stack.ledger.send(forged, on: Subjects.run(run.run_id), retry: .once))

                let verified = try await stack.ledger.verify()
                #expect(verified.problems.map(\.kind) == [.brokenChain], "\(verified.problems.map(\.detail))")
                #expect(verified.problems.first?.sequence == sent.sequence)
                #expect(verified.problems.first?.found == forged.prevhash)
            }
        }

        /// A worker that appends expecting a stale sequence (another writer got there first) folds the run again from
        /// the log and carries on: the chain names the other writer's event.
        @Test func theChainStaysWholeAcrossAnotherWritersEventAndARefold() async throws {
            try await withTestStack { stack in
                let target = EffectTarget()
                try await target.start()
                defer { Task { await target.stop() } }
                let flow = Integration.WorkerTests.callFlow("chain-conflict", "\(target.base)/slow")
                try #require(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                try #require(try await stack.http("POST", "/automation/flows/chain-conflict/activate").0 == 200)
                let (accepted, answer) = try await stack.http(
                    "POST", "/automation/flows/chain-conflict/run", ["input": [:]])
                try #require(accepted == 202)
                let runID = try #require(answer["run_id"]?.stringValue)
                try await eventually("the run calls the slow target") { target.total == 1 }

                // Another writer appends to the run (an event this version does not fold: it only moves the run).
                let last = try #require(try await stack.ledger.read(subject: Subjects.run(runID)).last)
                try await stack.ledger.append(
                    .other, to: .run(id: runID, flowID: "chain-conflict", flowVersion: 1),
                    expectedLastSequence: last.sequence)
                // And the driver's next append is refused once as stale, whatever it knew: it must read the run again.
                let refused = Flag()
                stack.ledger.failpoints.beforeAppend = { message in
                    guard message.subject == Subjects.run(runID),
                        !refused.value.exchange(true, ordering: .relaxed)
                    else { return }
                    throw NATSError(jetStream: .wrongLastSequence, message: "injected: another writer appended")
                }
                target.gate.store(true, ordering: .releasing)
                try await eventually("the run succeeds") { try stack.store.run(runID)?.status == .succeeded }
                stack.ledger.failpoints.beforeAppend = nil
                let wasRefused = refused.value.load(ordering: .relaxed)
                #expect(wasRefused, "the driver's append was refused once")

                let verified = try await stack.ledger.verify(subject: Subjects.run(runID))
                #expect(verified.isClean, "\(verified.problems.map(\.detail))")
                #expect(verified.unchained == 0)
                let links = try await Self.links(stack.ledger, Subjects.run(runID))
                #expect(links.dropFirst().allSatisfy { $0.prevhash != nil && $0.prevhash == $0.previous })
            }
        }
    }
}
