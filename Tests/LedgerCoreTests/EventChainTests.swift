import Foundation
import Testing

@testable import LedgerCore

/// The log's hash chain (`EventChain`, `LogVerifier`): pure parts, no NATS.
@Suite struct EventChainTests {
    /// FIPS 180-4 as first written here (a copy of every block, arrays for the state): the reference the faster
    /// implementation is checked against, at every length around the padding's boundaries.
    static func referenceSHA256(_ message: [UInt8]) -> [UInt8] {
        let k: [UInt32] = [
            0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
            0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
            0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
            0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
            0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
            0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
            0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
            0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
        ]
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var h: [UInt32] = [
            0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
        ]
        var bytes = message
        let bitLength = UInt64(bytes.count) * 8
        bytes.append(0x80)
        while bytes.count % 64 != 56 { bytes.append(0) }
        for i in (0..<8).reversed() { bytes.append(UInt8((bitLength >> (UInt64(i) * 8)) & 0xff)) }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: bytes.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] =
                    UInt32(bytes[j]) << 24 | UInt32(bytes[j + 1]) << 16 | UInt32(bytes[j + 2]) << 8
                    | UInt32(bytes[j + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.flatMap { v in [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
    }

    @Test func sha256MatchesTheStandardVectorsAndTheReferenceAtEveryLengthAroundABlock() {
        #expect(
            SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            SHA256.hexDigits(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        var generator = SystemRandomNumberGenerator()
        for length in 0...300 {
            let message = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(SHA256.hash(message) == Self.referenceSHA256(message), "length \(length)")
            // Both ways: with the CPU's SHA extensions (when it has them) and with the Swift rounds.
            for accelerated in [false, SHA256.accelerated] {
                #expect(
                    message.withUnsafeBytes { SHA256.hash($0, accelerated: accelerated) }
                        == Self.referenceSHA256(message), "length \(length), accelerated \(accelerated)")
            }
            // A slice (not starting at index 0) and a collection without contiguous storage hash the same.
            let padded = [0xAA] + message
            #expect(SHA256.hash(padded[1...]) == Self.referenceSHA256(message))
            #expect(SHA256.hash(message.lazy.map { $0 }) == Self.referenceSHA256(message))
        }
    }

    @Test func theHashIsOfTheExactBytesWithItsPrefix() {
        let hash = EventChain.hash(of: Array("abc".utf8))
        #expect(hash == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(ChainLink(sequence: 3, payload: Array("abc".utf8)) == ChainLink(sequence: 3, hash: hash))
        #expect(EventChain.isChained("ledger.run.r1") && EventChain.isChained("ledger.flow.f"))
        #expect(!EventChain.isChained("ledger.rejected.4") && !EventChain.isChained("assistant.command.issued"))
    }

    @Test func anEventWithoutPrevhashEncodesAsBefore() throws {
        let body = LedgerEvent.Body.runClaimed(
            RunClaimed(worker: "w2", previous_worker: "w1", in_flight: [], reason: "r"))
        let plain = try body.encode(
            id: "e", time: "2026-11-23T10:00:00.000Z", runid: "r", flowid: "f", flowversion: 1, codec: EventCodec())
        #expect(!String(decoding: plain, as: UTF8.self).contains("prevhash"))
        let chained = try body.encode(
            id: "e", time: "2026-11-23T10:00:00.000Z", runid: "r", flowid: "f", flowversion: 1,
            prevhash: "sha256:00", codec: EventCodec())
        let text = String(decoding: chained, as: UTF8.self)
        #expect(text.contains(#""prevhash":"sha256:00""#))
        // The same bytes but for the attribute, in its sorted place, and the event reads the same.
        #expect(
            text.replacingOccurrences(of: #""prevhash":"sha256:00","#, with: "")
                == String(decoding: plain, as: UTF8.self))
        #expect(try JSONTree.decode(LedgerEvent.self, from: chained) == JSONTree.decode(LedgerEvent.self, from: plain))
    }

    // MARK: - The verifier

    /// A subject's events as Ledgerflow appends them: each naming the hash of the one before.
    static func chain(_ subject: String, types: [String], chained: Bool = true) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = []
        var previous: [UInt8]?
        for (i, type) in types.enumerated() {
            let prevhash = chained ? previous.map { #","prevhash":"\#(EventChain.hash(of: $0))""# } ?? "" : ""
            let payload = Array(#"{"id":"\#(subject)-\#(i)","type":"\#(type)"\#(prevhash),"data":{}}"#.utf8)
            out.append((subject, payload))
            previous = payload
        }
        return out
    }

    static let runTypes = ["FlowRunStarted", "StepAttemptStarted", "StepAttemptSucceeded", "FlowRunSucceeded"]
    static let flowTypes = ["FlowRegistered", "FlowActivated"]

    /// Interleaves the subjects' messages as a log would hold them, numbered from 1.
    static func log(_ subjects: [[(String, [UInt8])]]) -> [(UInt64, String, [UInt8])] {
        var out: [(UInt64, String, [UInt8])] = []
        let longest = subjects.map(\.count).max() ?? 0
        for i in 0..<longest {
            for messages in subjects where i < messages.count {
                out.append((UInt64(out.count + 1), messages[i].0, messages[i].1))
            }
        }
        return out
    }

    static func verify(_ log: [(UInt64, String, [UInt8])], last: UInt64? = nil) -> LogVerifier {
        var verifier = LogVerifier(contiguous: true)
        for (sequence, subject, payload) in log {
            verifier.check(sequence: sequence, subject: subject, payload: payload)
        }
        verifier.finish(lastStreamSequence: last ?? log.last?.0 ?? 0)
        return verifier
    }

    @Test func aChainedLogIsClean() {
        let log = Self.log([
            Self.chain("ledger.flow.f", types: Self.flowTypes), Self.chain("ledger.run.a", types: Self.runTypes),
            Self.chain("ledger.run.b", types: Self.runTypes),
            [("assistant.command.issued", Array("not even json".utf8))],
        ])
        let verifier = Self.verify(log)
        #expect(verifier.isClean, "\(verifier.problems)")
        #expect(verifier.messages == 11 && verifier.subjects == 3)
        #expect(verifier.linked == 1 + 3 + 3 && verifier.unchained == 0)
        #expect(verifier.summary.contains("no problems"))
    }

    @Test func aLogFromBeforeTheChainIsUnchainedNotBroken() {
        let verifier = Self.verify(Self.log([Self.chain("ledger.run.old", types: Self.runTypes, chained: false)]))
        #expect(verifier.isClean)
        #expect(verifier.unchained == 3 && verifier.linked == 0)
    }

    @Test func aMessageDeletedFromTheMiddleOfARunIsFoundAtTheRunsNextEvent() throws {
        var log = Self.log([
            Self.chain("ledger.run.a", types: Self.runTypes), Self.chain("ledger.run.b", types: Self.runTypes),
        ])
        // Run a's second event (sequence 3) is deleted.
        log.removeAll { $0.0 == 3 }
        let verifier = Self.verify(log)
        let broken = try #require(verifier.problems.first { $0.kind == .brokenChain })
        #expect(broken.sequence == 5 && broken.subject == "ledger.run.a")
        #expect(broken.expected == EventChain.hash(of: Self.chain("ledger.run.a", types: Self.runTypes)[0].1))
        #expect(broken.found == EventChain.hash(of: Self.chain("ledger.run.a", types: Self.runTypes)[1].1))
        #expect(broken.detail.contains("sequence 3 between them was deleted"), "\(broken.detail)")
        let deleted = try #require(verifier.problems.first { $0.kind == .deleted })
        #expect(deleted.sequence == 3 && deleted.through == 3)
        #expect(verifier.problems.count == 2)
    }

    @Test func aDeletedHeadAMissingTailAndAForgedEventAreFound() {
        var log = Self.log([Self.chain("ledger.run.a", types: Self.runTypes)])
        log.removeFirst()  // the run's start
        log.removeLast()  // its last event: only the stream's numbering shows it
        let forged = Array(#"{"id":"x","type":"FlowRunSucceeded","prevhash":"sha256:00","data":{}}"#.utf8)
        log.append((9, "ledger.run.a", forged))
        log.append((10, "ledger.flow.f", Array("{oops".utf8)))
        let verifier = Self.verify(log, last: 11)
        let kinds = verifier.problems.map { "\($0.kind.rawValue)@\($0.sequence)" }
        #expect(
            kinds == ["deleted@1", "missing_head@2", "deleted@4", "broken_chain@9", "unreadable@10", "deleted@11"],
            "\(verifier.problems.map(\.detail))")
        #expect(!verifier.isClean)
    }

    @Test func anEventWithoutPrevhashAfterChainedOnesIsBroken() {
        var log = Self.log([Self.chain("ledger.run.a", types: Self.runTypes)])
        log.append((5, "ledger.run.a", Array(#"{"id":"late","type":"FlowRunSucceeded","data":{}}"#.utf8)))
        let verifier = Self.verify(log)
        #expect(verifier.problems.map(\.kind) == [.brokenChain])
        #expect(verifier.problems.first?.found == nil && verifier.problems.first?.sequence == 5)
    }

    @Test func aFilteredReadTakesTheDeletedSequencesFromTheStream() {
        let run = Self.chain("ledger.run.a", types: Self.runTypes)
        var verifier = LogVerifier(contiguous: false, firstStreamSequence: 2, deleted: [7])
        for (sequence, message) in zip([2, 4, 8] as [UInt64], [run[0], run[1], run[3]]) {
            verifier.check(sequence: sequence, subject: message.0, payload: message.1)
        }
        verifier.finish(lastStreamSequence: 9)
        #expect(
            verifier.problems.map { "\($0.kind.rawValue)@\($0.sequence)" } == [
                "broken_chain@8", "deleted@1", "deleted@7",
            ])
        #expect(verifier.problems.first?.detail.contains("sequence 7 between them was deleted") == true)
    }
}
