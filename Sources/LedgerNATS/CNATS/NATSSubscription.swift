import CNATS
import Synchronization

/// A core NATS subscription: messages arrive on cnats' thread and are buffered for `messages`.
public final class NATSSubscription: @unchecked Sendable {
    private var handle: OpaquePointer?
    private let sink: Sink
    private let sinkPointer: UnsafeMutableRawPointer
    /// The messages, in arrival order; ends when the subscription is closed.
    public let messages: AsyncStream<NATSMessage>
    private let connection: NATSConnection

    final class Sink: Sendable {
        let continuation: AsyncStream<NATSMessage>.Continuation
        init(_ continuation: AsyncStream<NATSMessage>.Continuation) { self.continuation = continuation }
    }

    init(connection: NATSConnection, subject: String, queue: String?) throws {
        let (stream, continuation) = AsyncStream<NATSMessage>.makeStream(bufferingPolicy: .unbounded)
        messages = stream
        sink = Sink(continuation)
        sinkPointer = Unmanaged.passRetained(sink).toOpaque()
        self.connection = connection
        var sub: OpaquePointer?
        let callback: natsMsgHandler = { _, _, msg, closure in
            guard let msg else { return }
            defer { natsMsg_Destroy(msg) }
            guard let closure else { return }
            let sink = Unmanaged<Sink>.fromOpaque(closure).takeUnretainedValue()
            sink.continuation.yield(NATSMessage(copying: msg, withHeaders: true))
        }
        let s: natsStatus
        if let queue {
            s = natsConnection_QueueSubscribe(&sub, connection.handle, subject, queue, callback, sinkPointer)
        } else {
            s = natsConnection_Subscribe(&sub, connection.handle, subject, callback, sinkPointer)
        }
        guard s == NATS_OK, let sub else {
            let error = natsLastError(s, "subscribing to \(subject)")
            Unmanaged<Sink>.fromOpaque(sinkPointer).release()
            throw error
        }
        _ = natsSubscription_SetPendingLimits(sub, 1_000_000, 1024 * 1024 * 1024)
        // The sink is released once cnats has dispatched the last message of the closed subscription.
        _ = natsSubscription_SetOnCompleteCB(
            sub,
            { closure in
                guard let closure else { return }
                let sink = Unmanaged<Sink>.fromOpaque(closure).takeRetainedValue()
                sink.continuation.finish()
            }, sinkPointer)
        handle = sub
    }

    /// Stops delivery and ends `messages`.
    public func unsubscribe() {
        if let handle { natsSubscription_Unsubscribe(handle) }
        sink.continuation.finish()
    }

    deinit {
        if let handle {
            natsSubscription_Unsubscribe(handle)
            DeferredRelease.destroy(subscription: handle, of: connection)
        }
        sink.continuation.finish()
    }
}
