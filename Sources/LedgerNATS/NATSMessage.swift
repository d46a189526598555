/// A message copied out of the C library: it owns its bytes, so it outlives the C message.
public struct NATSMessage: Sendable {
    public var subject: String
    public var reply: String?
    public var headers: [String: String]
    public var payload: [UInt8]

    public init(subject: String, reply: String? = nil, headers: [String: String] = [:], payload: [UInt8]) {
        self.subject = subject
        self.reply = reply
        self.headers = headers
        self.payload = payload
    }

    /// Where a JetStream-delivered message sits in its stream, parsed from the reply subject
    /// (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, with or without domain).
    public var jetStreamMetadata: JetStreamMetadata? {
        reply.flatMap(JetStreamMetadata.init(replySubject:))
    }

    /// A status message from the server (no responders, 404 no messages, 408 timeout, 100 heartbeat).
    public var statusCode: Int? {
        headers["Status"].flatMap { Int($0.prefix(3)) }
    }
}

public struct JetStreamMetadata: Sendable, Equatable {
    public var stream: String
    public var consumer: String
    public var numDelivered: UInt64
    public var streamSequence: UInt64
    public var consumerSequence: UInt64
    public var timestampNanos: Int64
    public var numPending: UInt64

    public init(
        stream: String, consumer: String, numDelivered: UInt64, streamSequence: UInt64, consumerSequence: UInt64,
        timestampNanos: Int64, numPending: UInt64
    ) {
        self.stream = stream
        self.consumer = consumer
        self.numDelivered = numDelivered
        self.streamSequence = streamSequence
        self.consumerSequence = consumerSequence
        self.timestampNanos = timestampNanos
        self.numPending = numPending
    }
}

extension JetStreamMetadata {
    /// Parses a JetStream acknowledgement subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
    /// (9 tokens), or the form with a domain and account hash in front of the stream (11 tokens or more); nil for
    /// any other subject. It reads the bytes in place: every message a consumer takes goes through here.
    public init?(replySubject reply: String) {
        let parsed =
            reply.utf8.withContiguousStorageIfAvailable(Self.parse)
            ?? Array(reply.utf8).withUnsafeBufferPointer(Self.parse)
        guard let parsed else { return nil }
        self = parsed
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> JetStreamMetadata? {
        let prefix: StaticString = "$JS.ACK."
        guard bytes.count > prefix.utf8CodeUnitCount, prefix.withUTF8Buffer({ bytes.starts(with: $0) }) else {
            return nil
        }
        // Where each token after "$JS.ACK." starts and ends (the first nine are all either form needs), on the stack
        // (`Range<Int>` is trivial: what was initialized needs no deinitializing).
        return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: 9) { tokens in
            var count = 0
            var tokenStart = prefix.utf8CodeUnitCount
            for index in tokenStart...bytes.count where index == bytes.count || bytes[index] == UInt8(ascii: ".") {
                if count < tokens.count { tokens.initializeElement(at: count, to: tokenStart..<index) }
                count += 1
                tokenStart = index + 1
            }
            // Tokens after "$JS.ACK.": 7 in the short form (9 in all), 9 or more with domain and account hash in
            // front of the stream.
            let base: Int
            switch count {
            case 7: base = 0
            case 9...: base = 2
            default: return nil
            }
            // Decimal digits only (nats-server writes these with %d), within range.
            func digits(_ range: Range<Int>) -> UInt64? {
                guard !range.isEmpty else { return nil }
                var value: UInt64 = 0
                for index in range {
                    let digit = bytes[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    let (times10, overflowed) = value.multipliedReportingOverflow(by: 10)
                    let (sum, carried) = times10.addingReportingOverflow(UInt64(digit))
                    guard !overflowed, !carried else { return nil }
                    value = sum
                }
                return value
            }
            func number(_ token: Int) -> UInt64? { digits(tokens[base + token]) }
            /// The timestamp, signed (as Int64 reads it: a leading "-" allowed).
            func signed(_ token: Int) -> Int64? {
                let range = tokens[base + token]
                guard range.count > 1, bytes[range.lowerBound] == UInt8(ascii: "-") else {
                    return digits(range).flatMap { Int64(exactly: $0) }
                }
                guard let magnitude = digits(range.dropFirst()), magnitude <= UInt64(Int64.max) + 1 else { return nil }
                return Int64(truncatingIfNeeded: 0 &- magnitude)
            }
            func text(_ token: Int) -> String {
                String(decoding: UnsafeBufferPointer(rebasing: bytes[tokens[base + token]]), as: UTF8.self)
            }
            guard let delivered = number(2), let streamSequence = number(3), let consumerSequence = number(4),
                let timestampNanos = signed(5), let pending = number(6)
            else { return nil }
            return JetStreamMetadata(
                stream: text(0), consumer: text(1), numDelivered: delivered, streamSequence: streamSequence,
                consumerSequence: consumerSequence, timestampNanos: timestampNanos, numPending: pending)
        }
    }
}
