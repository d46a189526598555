import Foundation
import LedgerCore
import Testing

@Suite struct EnvelopeTests {
    let codec = EventCodec()

    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func aValidCommandDecodesWithItsData() throws {
        let text =
            #"{"specversion":"1.0","id":"e1","source":"assistant","type":"AssistantCommandIssued","time":"2026-11-23T10:00:00Z","data":{"message_id":"m-1","intent":"calendar.create_event","entities":{"title":"x"},"user":{"id":"u"},"channel":{"type":"chat","conversation_id":"c"}}}"#
        let event = try decodeInbound(
            bytes(text), expectedTypes: ["AssistantCommandIssued"], required: ["message_id", "user.id"], codec: codec
        ).get()
        #expect(event.id == "e1")
        #expect(event.data[path: "entities.title"] == "x")
    }

    @Test(arguments: [
        ("not json at all", "not valid JSON"),
        ("[1,2]", "not an object"),
        (
            #"{"specversion":"1.0","source":"s","type":"AssistantCommandIssued","data":{}}"#,
            "missing CloudEvents attribute(s): id"
        ),
        (#"{"specversion":"0.3","id":"1","source":"s","type":"AssistantCommandIssued"}"#, "specversion must be"),
        (#"{"specversion":"1.0","id":"1","source":"s","type":"Nope"}"#, "unknown event type \"Nope\""),
        (
            #"{"specversion":"1.0","id":"1","source":"s","type":"AssistantCommandIssued","data":{"message_id":"m"}}"#,
            "missing data field(s): user.id"
        ),
    ])
    func refusalsSayWhatIsWrong(_ input: String, _ reason: String) {
        let result = decodeInbound(
            bytes(input), expectedTypes: ["AssistantCommandIssued"], required: ["message_id", "user.id"], codec: codec)
        guard case .failure(let problem) = result else {
            Issue.record("accepted \(input)")
            return
        }
        #expect(problem.reason.contains(reason), "\(problem.reason)")
    }

    @Test func engineEventsRoundTripThroughTheEnvelope() throws {
        let body = LedgerEvent.Body.stepAttemptFailed(
            StepAttemptFailed(
                step_id: "s", attempt: 2, error: StepError(kind: .timeout, message: "late", retryable: true),
                started_at: "2026-11-23T10:00:00.000Z", finished_at: "2026-11-23T10:00:01.000Z",
                retry_at: "2026-11-23T10:00:02.000Z"))
        let payload = try body.encode(
            id: "i", time: "2026-11-23T10:00:01.000Z", runid: "r", flowid: "f", flowversion: 3, codec: codec)
        let event = try codec.decode(LedgerEvent.self, from: payload)
        #expect(event.type == "StepAttemptFailed")
        #expect(event.runid == "r")
        #expect(event.body == body)
        let raw = try codec.decode(CloudEvent<JSONValue>.self, from: payload)
        #expect(raw.specversion == "1.0")
        #expect(raw.stepid == "s")
        #expect(raw.flowversion == 3)
    }

    @Test func refusedPayloadsAreKeptTextOrBase64() {
        #expect(
            InboundMessageRejected(subject: "a", sequence: 1, reason: "r", payload: Array("hi".utf8)).payload == "hi")
        let binary = InboundMessageRejected(subject: "a", sequence: 1, reason: "r", payload: [0xff, 0xfe, 0x00])
        #expect(binary.payload_encoding == "base64")
        #expect(binary.payload == "//4A")
    }

    @Test func timestampsAgreeWithFoundation() throws {
        let oracle = ISO8601DateFormatter()
        oracle.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for millis: Int64 in [0, 951_782_400_000, 1_795_412_345_678, 4_102_444_799_999] {
            let text = Timestamp.format(millis: millis)
            #expect(text == oracle.string(from: Date(timeIntervalSince1970: Double(millis) / 1000)))
            let parsed = try #require(Timestamp.parse(text))
            #expect(Int64((parsed.timeIntervalSince1970 * 1000).rounded()) == millis)
        }
        let plain = ISO8601DateFormatter()
        #expect(Timestamp.parse("2026-11-20T05:45:45+01:00") == plain.date(from: "2026-11-20T05:45:45+01:00"))
    }

    /// The digit-by-digit formatter writes what the one it replaced wrote (each field padded with zeros), over the
    /// whole range of years and at its ends.
    @Test func timestampsAreWrittenAsThePaddedFieldsWere() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        func padded(_ millis: Int64) -> String {
            let date = Date(timeIntervalSince1970: Double(millis) / 1000)
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            func pad(_ v: Int, _ n: Int) -> String {
                let s = String(v)
                return String(repeating: "0", count: max(0, n - s.count)) + s
            }
            let milli = Int(((millis % 1000) + 1000) % 1000)
            return "\(pad(c.year!, 4))-\(pad(c.month!, 2))-\(pad(c.day!, 2))T\(pad(c.hour!, 2)):\(pad(c.minute!, 2)):"
                + "\(pad(c.second!, 2)).\(pad(milli, 3))Z"
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        // From 1583 (the Gregorian calendar's own years, where Foundation's calendar agrees) to 9999.
        let range: ClosedRange<Int64> = -12_212_553_600_000...253_402_300_799_999
        for i in 0..<5000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let millis =
                i < 4
                ? [range.lowerBound, range.upperBound, 0, -1][i]
                : range.lowerBound + Int64(state >> 2) % Int64(range.count)
            #expect(Timestamp.format(millis: millis) == padded(millis), "\(millis)")
        }
        #expect(Timestamp.format(millis: Int64.min) == "0001-01-01T00:00:00.000Z")
        #expect(Timestamp.format(millis: Int64.max) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.format(millis: -62_135_596_800_000 + 86_400_000 * 59 + 1) == "0001-03-01T00:00:00.001Z")
    }

    @Test func sha256MatchesTheStandardVectors() {
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(DerivedID.uuid("flow/sig") == DerivedID.uuid("flow/sig"))
        #expect(DerivedID.uuid("flow/sig") != DerivedID.uuid("flow/sig2"))
        // The ids in existing logs (a run started by a signal is found by this id): the same forever.
        #expect(DerivedID.uuid("flow/sig") == "2fe7e864-0731-8338-b1aa-11c9036819bc")
        #expect(DerivedID.uuid("calendar-create-event/cmd-endpoint") == "b24f6980-bf87-81a5-9f34-83dbd5dca04e")
        #expect(DerivedID.uuid("") == "e3b0c442-98fc-8c14-9afb-f4c8996fb924")
    }

    /// Event ids are random UUIDs (version 4) in lowercase, as Foundation's were: 8-4-4-4-12 hex digits, the
    /// version digit 4, the variant digit one of 8, 9, a, b; and they do not repeat.
    @Test func eventIDsAreLowercaseVersion4UUIDs() throws {
        var seen = Set<String>()
        var variants = Set<Character>()
        for _ in 0..<10_000 {
            let id = EventID.make()
            let groups = id.split(separator: "-", omittingEmptySubsequences: false)
            #expect(groups.map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            #expect(id.allSatisfy { "0123456789abcdef-".contains($0) }, "\(id)")
            #expect(groups[2].first == "4", "\(id)")
            let variant = try #require(groups[3].first)
            #expect("89ab".contains(variant), "\(id)")
            variants.insert(variant)
            #expect(UUID(uuidString: id)?.uuidString.lowercased() == id)
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
        #expect(variants.count == 4, "the variant's free bits are random too")
    }
}
