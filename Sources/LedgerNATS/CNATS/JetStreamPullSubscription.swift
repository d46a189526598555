import CNATS
import Dispatch
import Foundation

/// A pull subscription to an existing consumer, speaking the pull protocol itself: one request is outstanding at a
/// time, messages are returned as soon as they arrive (not when a whole batch has filled), and blocking reads run on
/// a thread of their own.
public final class JetStreamPullSubscription: @unchecked Sendable {
    private let sub: OpaquePointer
    private let queue: DispatchQueue
    private let inbox: String
    private let nextSubject: String
    public let connection: NATSConnection
    public let stream: String
    public let consumer: String
    // Touched only on `queue`.
    private var outstanding = 0
    private var expiresAt = ContinuousClock.now

    public init(connection: NATSConnection, stream: String, consumer: String) throws {
        self.connection = connection
        self.stream = stream
        self.consumer = consumer
        queue = DispatchQueue(label: "ledgerflow.nats.fetch.\(consumer)")
        inbox = "_INBOX.\(UUID().uuidString.replacingOccurrences(of: "-", with: ""))"
        nextSubject = "$JS.API.CONSUMER.MSG.NEXT.\(stream).\(consumer)"
        var sub: OpaquePointer?
        let s = natsConnection_SubscribeSync(&sub, connection.handle, inbox)
        guard s == NATS_OK, let sub else { throw natsLastError(s, "subscribing for consumer \(consumer)") }
        _ = natsSubscription_SetPendingLimits(sub, 1_000_000, 1024 * 1024 * 1024)
        self.sub = sub
    }

    deinit {
        natsSubscription_Unsubscribe(sub)
        DeferredRelease.destroy(subscription: sub, of: connection)
    }

    /// Up to `batch` messages: what has arrived, else the first to arrive within `maxWait`; empty when none did.
    public func fetch(batch: Int, maxWait: Duration) async throws -> [NATSMessage] {
        try await NATSBlocking.run(on: queue) { [self] in
            try fetchBlocking(batch: batch, maxWait: maxWait)
        }
    }

    private func fetchBlocking(batch: Int, maxWait: Duration) throws -> [NATSMessage] {
        var out: [NATSMessage] = []
        try drain(into: &out, limit: batch, wait: .zero)
        if !out.isEmpty { return out }
        if outstanding <= 0 || ContinuousClock.now >= expiresAt {
            try request(batch: batch, expires: maxWait)
        }
        let wait = min(maxWait, max(.zero, expiresAt - ContinuousClock.now))
        try drain(into: &out, limit: batch, wait: wait)
        return out
    }

    private func request(batch: Int, expires: Duration) throws {
        let nanos = expires.components.seconds * 1_000_000_000 + expires.components.attoseconds / 1_000_000_000
        // The server ends the request slightly before we stop waiting, so its 408 arrives first.
        let body = "{\"batch\":\(batch),\"expires\":\(max(1_000_000, nanos - 10_000_000))}"
        try connection.publish(subject: nextSubject, payload: Array(body.utf8), reply: inbox)
        outstanding = batch
        expiresAt = ContinuousClock.now + expires
    }

    /// Reads messages: waits up to `wait` for the first, then takes what is already buffered.
    private func drain(into out: inout [NATSMessage], limit: Int, wait: Duration) throws {
        var timeout = Int64(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
        while out.count < limit {
            var msg: OpaquePointer?
            let s = natsSubscription_NextMsg(&msg, sub, timeout)
            if s == NATS_TIMEOUT { return }
            guard s == NATS_OK, let msg else { throw natsLastError(s, "reading from consumer \(consumer)") }
            defer { natsMsg_Destroy(msg) }
            timeout = 0
            if natsMsg_GetReply(msg) != nil {
                var message = NATSMessage(copying: msg, withHeaders: false)
                // Only `Nats-Msg-Id`, and only off the engine's own subjects (it names the run of an output).
                if !message.subject.hasPrefix("ledger.") {
                    var value: UnsafePointer<CChar>?
                    if natsMsgHeader_Get(msg, "Nats-Msg-Id", &value) == NATS_OK, let value {
                        message.headers["Nats-Msg-Id"] = String(cString: value)
                    }
                }
                out.append(message)
                outstanding -= 1
                continue
            }
            // A status message ends (404, 408) or refuses (409) the outstanding request; 100 is a heartbeat.
            let status = NATSMessage(copying: msg, withHeaders: true)
            switch status.statusCode {
            case 100: continue
            case 404, 408:
                outstanding = 0
                if out.isEmpty, timeout == 0 { return }
            case 409:
                outstanding = 0
                let description = status.headers["Description"] ?? "request refused"
                if description.localizedCaseInsensitiveContains("deleted") {
                    throw NATSError(
                        status: 0, jetStream: .consumerNotFound, message: "consumer \(consumer) was deleted")
                }
                return
            default:
                outstanding = 0
                if status.headers["Status"] == "503" {
                    throw NATSError(message: "JetStream did not answer the pull request (no responders)")
                }
                return
            }
        }
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
            body +=
                " {\"delay\":\(delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000)}"
        }
        try connection.publish(subject: reply, payload: Array(body.utf8))
    }
}
