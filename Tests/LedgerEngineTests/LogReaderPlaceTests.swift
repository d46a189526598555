import LedgerNATS
import Testing

@testable import LedgerEngine

/// How the log reader places what arrives on its inbox (pure, no NATS needed).
@Suite struct LogReaderPlaceTests {
    @Test func aDeliveryIsPlacedByItsAcknowledgementSubject() throws {
        let message = NATSMessage(
            subject: "ledger.run.r-1", reply: "$JS.ACK.LEDGER.read-1.1.42.7.1700000000000000000.3", payload: [])
        let meta = try #require(try LogReader.place(message))
        #expect(meta.streamSequence == 42)
        #expect(meta.consumerSequence == 7)
    }

    @Test func aMessageThatIsNoDeliveryOfTheLogIsLeftOut() throws {
        // Someone published to the reader's inbox: its reply, if any, is not JetStream's.
        #expect(try LogReader.place(NATSMessage(subject: "_INBOX.x", reply: "_INBOX.y", payload: [1])) == nil)
        #expect(try LogReader.place(NATSMessage(subject: "_INBOX.x", reply: nil, payload: [])) == nil)
    }

    @Test func aDeliveryWhoseAcknowledgementSubjectCannotBeReadIsSaidNotSkipped() {
        // Skipped, it would leave a gap in the consumer's numbering: the reader would open again before it, and meet
        // it again, forever.
        for reply in ["$JS.ACK.LEDGER.read-1.1.x.7.1.3", "$JS.ACK.LEDGER.read-1", "$JS.ACK.a.b.c.d.e.f.g.h"] {
            #expect {
                _ = try LogReader.place(NATSMessage(subject: "ledger.run.r-1", reply: reply, payload: []))
            } throws: { error in
                "\(error)".contains("acknowledgement subject Ledgerflow cannot read") && "\(error)".contains(reply)
            }
        }
    }
}
