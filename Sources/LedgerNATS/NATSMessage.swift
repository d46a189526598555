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
        guard let reply, reply.hasPrefix("$JS.ACK.") else { return nil }
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
}
