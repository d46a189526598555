import CNATS
import Dispatch

/// A pull subscription bound to an existing consumer; `fetch` blocks on a thread of its own.
public final class JetStreamPullSubscription: @unchecked Sendable {
    private let js: OpaquePointer
    private let sub: OpaquePointer
    private let queue: DispatchQueue
    public let connection: NATSConnection
    public let stream: String
    public let consumer: String

    public init(connection: NATSConnection, stream: String, consumer: String) throws {
        self.connection = connection
        self.stream = stream
        self.consumer = consumer
        queue = DispatchQueue(label: "ledgerflow.nats.fetch.\(consumer)")
        var js: OpaquePointer?
        var s = natsConnection_JetStream(&js, connection.handle, nil)
        guard s == NATS_OK, let js else { throw natsLastError(s, "opening the JetStream context") }
        var subOpts = jsSubOptions()
        jsSubOptions_Init(&subOpts)
        var sub: OpaquePointer?
        var jerr = jsErrCode(rawValue: 0)
        s = stream.withCString { streamName in
            consumer.withCString { consumerName in
                subOpts.Stream = streamName
                subOpts.Consumer = consumerName
                subOpts.ManualAck = true
                return js_PullSubscribe(&sub, js, nil, nil, nil, &subOpts, &jerr)
            }
        }
        guard s == NATS_OK, let sub else {
            var error = natsLastError(s, "binding to consumer \(consumer) of stream \(stream)")
            error.jetStreamCode = Int(jerr.rawValue)
            jsCtx_Destroy(js)
            throw error
        }
        self.js = js
        self.sub = sub
    }

    deinit {
        natsSubscription_Unsubscribe(sub)
        natsSubscription_Destroy(sub)
        jsCtx_Destroy(js)
    }

    /// Up to `batch` messages: whatever is available at once, else the first one to arrive within `maxWait`;
    /// an empty array when none arrived. (A plain waiting fetch of a batch would hold a lone message until the
    /// batch filled or the wait expired.)
    public func fetch(batch: Int, maxWait: Duration) async throws -> [NATSMessage] {
        let nanos = maxWait.components.seconds * 1_000_000_000 + maxWait.components.attoseconds / 1_000_000_000
        return try await NATSBlocking.run(on: queue) { [self] in
            let available = try Self.fetchNow(sub, batch: batch, noWait: true, expires: 0)
            if !available.isEmpty { return available }
            return try Self.fetchNow(sub, batch: 1, noWait: false, expires: nanos)
        }
    }

    private static func fetchNow(_ sub: OpaquePointer, batch: Int, noWait: Bool, expires: Int64) throws -> [NATSMessage] {
        var request = jsFetchRequest()
        jsFetchRequest_Init(&request)
        request.Batch = Int32(batch)
        request.NoWait = noWait
        request.Expires = noWait ? 0 : expires
        var list = natsMsgList()
        let s = natsSubscription_FetchRequest(&list, sub, &request)
        if s == NATS_TIMEOUT || s == NATS_NOT_FOUND {
            return []
        }
        guard s == NATS_OK else { throw natsLastError(s, "fetching from the consumer") }
        defer { natsMsgList_Destroy(&list) }
        var messages = [NATSMessage]()
        messages.reserveCapacity(Int(list.Count))
        for i in 0..<Int(list.Count) {
            if let msg = list.Msgs[i] { messages.append(NATSMessage(copying: msg, withHeaders: false)) }
        }
        return messages
    }

    /// Acknowledges a message (fire and forget, like any publish).
    public func ack(_ message: NATSMessage) throws {
        guard let reply = message.reply else { return }
        try connection.publish(subject: reply, payload: Array("+ACK".utf8))
    }

    /// Asks for redelivery after `delay`.
    public func nak(_ message: NATSMessage, delay: Duration? = nil) throws {
        guard let reply = message.reply else { return }
        var body = "-NAK"
        if let delay {
            body += " {\"delay\":\(delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000)}"
        }
        try connection.publish(subject: reply, payload: Array(body.utf8))
    }
}
