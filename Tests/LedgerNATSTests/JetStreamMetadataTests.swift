import LedgerNATS
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

    /// Random subjects of the right shape and of nearly the right shape agree with a plain split of the text.
    @Test func agreesWithAPlainSplit() {
        var generator = SystemRandomNumberGenerator()
        let pieces = [
            "", "0", "1", "42", "18446744073709551615", "18446744073709551616", "9223372036854775807", "x", "ü",
        ]
        for _ in 0..<2000 {
            let count = Int.random(in: 5...12, using: &generator)
            let tokens = (0..<count).map { _ in pieces.randomElement(using: &generator)! }
            let subject = "$JS.ACK." + tokens.joined(separator: ".")
            #expect(JetStreamMetadata(replySubject: subject) == reference(subject), "\(subject)")
        }
    }

    func reference(_ reply: String) -> JetStreamMetadata? {
        let tokens = reply.split(separator: ".", omittingEmptySubsequences: false)
        let base: Int
        if tokens.count == 9 {
            base = 2
        } else if tokens.count >= 11 {
            base = 4
        } else {
            return nil
        }
        func number(_ token: Substring) -> UInt64? {
            token.allSatisfy { $0.isASCII && $0.isNumber } ? UInt64(token) : nil
        }
        guard let delivered = number(tokens[base + 2]), let sseq = number(tokens[base + 3]),
            let cseq = number(tokens[base + 4]), let ts = number(tokens[base + 5]).flatMap({ Int64(exactly: $0) }),
            let pending = number(tokens[base + 6])
        else { return nil }
        return JetStreamMetadata(
            stream: String(tokens[base]), consumer: String(tokens[base + 1]), numDelivered: delivered,
            streamSequence: sseq, consumerSequence: cseq, timestampNanos: ts, numPending: pending)
    }
}
