import Foundation
import LedgerCore
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    @Suite struct LedgerTests {
        @Test func appendsArePipelinedAndReadBackInOrder() async throws {
            let ledger = try await freshLedger()
            let messages = (0..<500).map { i in
                OutgoingMessage(subject: "ledger.test", payload: Array("{\"n\":\(i)}".utf8), messageID: "m-\(i)")
            }
            let acks = try await ledger.appendPipelined(messages).map { try $0.get() }
            #expect(acks.map(\.sequence) == Array(1...500))
            let read = try await ledger.read(subject: "ledger.test")
            #expect(read.count == 500)
            #expect(read.map(\.sequence) == Array(1...500))
            #expect(String(decoding: read[41].payload, as: UTF8.self) == "{\"n\":41}")
        }

        /// An append whose acknowledgement is lost (a server paused past the wait) is tried again; the retry finds
        /// the subject moved on by this very message, which is no conflict: the append succeeds where it landed.
        @Test func aRetriedAppendWhoseFirstTryLandedIsNotAConflict() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let subject = Subjects.run("lost-ack")
            let first = try await ledger.append(
                OutgoingMessage(subject: subject, payload: [1], messageID: "a", expectedLastSubjectSequence: 0))
            let lost = Mutex(true)
            ledger.failpoints.afterAppend = { _ in
                if lost.withLock({ value in
                    defer { value = false }; return value
                }) {
                    throw NATSError(message: "injected: the acknowledgement was lost")
                }
            }
            defer { ledger.failpoints.afterAppend = nil }
            let second = try await ledger.append(
                OutgoingMessage(
                    subject: subject, payload: [2], messageID: "b", expectedLastSubjectSequence: first.sequence),
                retry: .untilAnswered)
            #expect(second.sequence == first.sequence + 1)
            #expect(try await ledger.read(subject: subject).map(\.payload) == [[1], [2]])
            // A real conflict is still one: another message in between.
            await #expect(throws: NATSError.self) {
                try await ledger.append(
                    OutgoingMessage(
                        subject: subject, payload: [3], messageID: "c", expectedLastSubjectSequence: first.sequence),
                    retry: .untilAnswered)
            }
        }

        @Test func aRepeatedMessageIDIsStoredOnce() async throws {
            let ledger = try await freshLedger()
            let first = try await ledger.append(
                OutgoingMessage(subject: "ledger.test", payload: [1], messageID: "same"))
            let second = try await ledger.append(
                OutgoingMessage(subject: "ledger.test", payload: [2], messageID: "same"))
            #expect(!first.duplicate)
            #expect(second.duplicate)
            #expect(second.sequence == first.sequence)
            #expect(try await ledger.lastSequence() == 1)
        }

        @Test func expectedLastSubjectSequenceSerialisesARunsDecisions() async throws {
            let ledger = try await freshLedger()
            let subject = Subjects.run("r1")
            let first = try await ledger.append(
                OutgoingMessage(subject: subject, payload: [1], expectedLastSubjectSequence: 0))
            // Another writer that also believed the run was new is refused.
            await #expect(throws: NATSError.self) {
                try await ledger.append(OutgoingMessage(subject: subject, payload: [2], expectedLastSubjectSequence: 0))
            }
            do {
                _ = try await ledger.append(
                    OutgoingMessage(subject: subject, payload: [2], expectedLastSubjectSequence: 0))
            } catch let error as NATSError {
                #expect(error.isWrongLastSequence)
            }
            // Unrelated subjects in between do not matter; the run's own last sequence does.
            _ = try await ledger.append(OutgoingMessage(subject: "ledger.test", payload: [9]))
            let second = try await ledger.append(
                OutgoingMessage(subject: subject, payload: [3], expectedLastSubjectSequence: first.sequence))
            #expect(second.sequence == 3)
            #expect(try await ledger.read(subject: subject).count == 2)
        }
    }
}
