import LedgerNATS
import LedgerTestSupport
import Testing

/// The acknowledgement subject every consumed message carries, read byte by byte (no server needed).
struct JetStreamMetadataTests {
    @Test func readsTheShortForm() throws {
        let meta = try #require(
            JetStreamMetadata(replySubject: "$JS.ACK.LEDGER.read-3f2a.1.4711.42.1764662400123456789.7"))
        #expect(
            meta
                == JetStreamMetadata(
                    stream: "LEDGER", consumer: "read-3f2a", numDelivered: 1, streamSequence: 4711,
                    consumerSequence: 42, timestampNanos: 1_764_662_400_123_456_789, numPending: 7))
    }

    @Test func readsTheFormWithDomainAndAccountHash() throws {
        // $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<token>
        let meta = try #require(
            JetStreamMetadata(replySubject: "$JS.ACK.hub.ACCHASH.LEDGER.worker.3.18446744073709551615.9.17.0.xyz"))
        #expect(meta.stream == "LEDGER")
        #expect(meta.consumer == "worker")
        #expect(meta.numDelivered == 3)
        #expect(meta.streamSequence == .max)
        #expect(meta.consumerSequence == 9)
        #expect(meta.timestampNanos == 17)
        #expect(meta.numPending == 0)
    }

    @Test(arguments: [
        "",
        "$JS.ACK.",
        "$JS.ACK.LEDGER.c.1.2.3.4",  // 8 tokens
        "$JS.ACK.LEDGER.c.1.2.3.4.5.6",  // 10 tokens
        "$JS.ACK.LEDGER.c.1.2..4.5",  // an empty number
        "$JS.ACK.LEDGER.c.1.2.x3.4.5",  // not a number
        "$JS.ACK.LEDGER.c.1.2.-3.4.5",  // negative
        "$JS.ACK.LEDGER.c.+1.2.3.4.5",  // a sign nats-server never writes
        "$JS.ACK.LEDGER.c.1.18446744073709551616.3.4.5",  // past UInt64
        "$JS.ACK.LEDGER.c.1.2.3.9223372036854775808.5",  // a timestamp past Int64
        "$JS.NAK.LEDGER.c.1.2.3.4.5",
        "_INBOX.abc.def",
        "$JS.ACK.LEDGER.c.1.2.3.4.5\u{0}",
        "$JS.ACK.LÉDGER.c.١.2.3.4.5",  // a digit that is not ASCII
    ])
    func refusesAnythingElse(_ subject: String) {
        #expect(JetStreamMetadata(replySubject: subject) == nil)
    }

    @Test func readsANegativeTimestampAsInt64Does() throws {
        #expect(try #require(JetStreamMetadata(replySubject: "$JS.ACK.S.c.1.2.3.-5.0")).timestampNanos == -5)
        #expect(
            try #require(JetStreamMetadata(replySubject: "$JS.ACK.S.c.1.2.3.-9223372036854775808.0")).timestampNanos
                == .min)
        #expect(JetStreamMetadata(replySubject: "$JS.ACK.S.c.1.2.3.-9223372036854775809.0") == nil)
        #expect(JetStreamMetadata(replySubject: "$JS.ACK.S.c.1.2.3.-.0") == nil)
    }

    /// Random subjects of the right shape and of nearly the right shape read as the parser this one replaced read
    /// them (a split of the text, each number read by UInt64 or Int64), from a fixed seed so a failure replays.
    /// Left out: a "+" sign and "-0" on the counters, which that parser took and nats-server never writes.
    @Test func agreesWithTheSplitItReplaced() {
        var generator = SeededRandom(seed: 0x5EED_2026_1202)
        let pieces = [
            "", "0", "1", "42", "-5", "18446744073709551615", "18446744073709551616", "9223372036854775807",
            "-9223372036854775808", "x", "ü", "LEDGER",
        ]
        for _ in 0..<5000 {
            let count = Int.random(in: 5...12, using: &generator)
            let tokens = (0..<count).map { _ in pieces.randomElement(using: &generator)! }
            let subject = "$JS.ACK." + tokens.joined(separator: ".")
            #expect(JetStreamMetadata(replySubject: subject) == replaced(subject), "\(subject)")
        }
    }

    /// The parser before 2026-12-02, as it was.
    func replaced(_ reply: String) -> JetStreamMetadata? {
        guard reply.hasPrefix("$JS.ACK.") else { return nil }
        let tokens = reply.split(separator: ".", omittingEmptySubsequences: false)
        let base: Int
        if tokens.count == 9 {
            base = 2
        } else if tokens.count >= 11 {
            base = 4
        } else {
            return nil
        }
        guard let delivered = UInt64(tokens[base + 2]), let streamSeq = UInt64(tokens[base + 3]),
            let consumerSeq = UInt64(tokens[base + 4]), let ts = Int64(tokens[base + 5]),
            let pending = UInt64(tokens[base + 6])
        else { return nil }
        return JetStreamMetadata(
            stream: String(tokens[base]), consumer: String(tokens[base + 1]), numDelivered: delivered,
            streamSequence: streamSeq, consumerSequence: consumerSeq, timestampNanos: ts, numPending: pending)
    }
}
