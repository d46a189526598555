import CNATS
import Dispatch
import Synchronization

/// A message to append to a stream.
public struct OutgoingMessage: Sendable {
    public var subject: String
    public var payload: [UInt8]
    /// `Nats-Msg-Id`: the server drops a second publish with the same id inside its duplicate window.
    public var messageID: String?
    /// `Nats-Expected-Last-Subject-Sequence`: refused (JetStream 10071) unless the subject's last message has this
    /// stream sequence; 0 means "the subject has no message yet".
    public var expectedLastSubjectSequence: UInt64?
    public var headers: [String: String]

    public init(
        subject: String, payload: [UInt8], messageID: String? = nil, expectedLastSubjectSequence: UInt64? = nil,
        headers: [String: String] = [:]
    ) {
        self.subject = subject
        self.payload = payload
        self.messageID = messageID
        self.expectedLastSubjectSequence = expectedLastSubjectSequence
        self.headers = headers
    }
}

/// The stream's acknowledgement of one append.
public struct PublishAck: Sendable, Equatable {
    public var sequence: UInt64
    public var duplicate: Bool
    public init(sequence: UInt64, duplicate: Bool) {
        self.sequence = sequence
        self.duplicate = duplicate
    }
}

/// Who waits for the acknowledgements of appends in flight (`index`: which of its messages was answered).
protocol AckWaiter: AnyObject, Sendable {
    func fulfil(_ index: Int, _ result: Result<PublishAck, NATSError>)
}

/// One append awaited alone (the engine's own, one decision at a time): its caller resumed once, with no array.
final class SingleAck: AckWaiter {
    let continuation: UnsafeContinuation<Result<PublishAck, NATSError>, Never>
    let resumed = Atomic<Bool>(false)

    init(_ continuation: UnsafeContinuation<Result<PublishAck, NATSError>, Never>) {
        self.continuation = continuation
    }

    func fulfil(_ index: Int, _ result: Result<PublishAck, NATSError>) {
        // An acknowledgement and `failAll` may both answer: the first one resumes the caller.
        guard !resumed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        continuation.resume(returning: result)
    }
}

/// One batch of appends whose acknowledgements are awaited together.
final class AckBatch: AckWaiter {
    typealias Completion = @Sendable ([Result<PublishAck, NATSError>]) -> Void
    struct State {
        var results: [Result<PublishAck, NATSError>?]
        var remaining: Int
        var completion: Completion?
    }
    let state: Mutex<State>

    /// `completion` is called once, with every result, when the last one is in.
    init(count: Int, completion: @escaping Completion) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, completion: completion))
    }

    convenience init(count: Int, continuation: CheckedContinuation<[Result<PublishAck, NATSError>], Never>) {
        self.init(count: count) { continuation.resume(returning: $0) }
    }

    func fulfil(_ index: Int, _ result: Result<PublishAck, NATSError>) {
        let done: (Completion, [Result<PublishAck, NATSError>])? =
            state.withLock { state in
                guard state.results[index] == nil else { return nil }
                state.results[index] = result
                state.remaining -= 1
                guard state.remaining == 0, let completion = state.completion else { return nil }
                state.completion = nil
                return (completion, state.results.map { $0! })
            }
        if let (completion, results) = done { completion(results) }
    }
}

/// Maps in-flight C messages to the batch waiting for them; touched by cnats' ack thread.
final class InFlightAcks: Sendable {
    let entries = Mutex<[UInt: (any AckWaiter, Int)]>([:])

    func register(_ msg: OpaquePointer, _ batch: any AckWaiter, _ index: Int) {
        entries.withLock { $0[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg)))] = (batch, index) }
    }

    func take(_ msg: OpaquePointer) -> (any AckWaiter, Int)? {
        entries.withLock { $0.removeValue(forKey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg)))) }
    }

    func failAll(_ error: NATSError) {
        let all = entries.withLock { entries in
            defer { entries.removeAll() }
            return Array(entries.values)
        }
        for (batch, index) in all { batch.fulfil(index, .failure(error)) }
    }
}

/// Pipelined JetStream appends: every message is published asynchronously and a batch's acknowledgements are
/// awaited together, so many appends share one round trip.
public final class JetStreamPublisher: @unchecked Sendable {
    private let js: OpaquePointer
    private let inFlight: InFlightAcks
    private let inFlightPointer: UnsafeMutableRawPointer
    private let queue = DispatchQueue(label: "ledgerflow.nats.publish")
    private let ackTimeoutMs: Int64
    /// Keeps the connection alive as long as the JetStream context.
    public let connection: NATSConnection

    public init(connection: NATSConnection, maxPending: Int = 65_536, ackTimeout: Duration = .seconds(10)) throws {
        self.connection = connection
        self.ackTimeoutMs = Self.milliseconds(ackTimeout)
        let inFlight = InFlightAcks()
        self.inFlight = inFlight
        inFlightPointer = Unmanaged.passRetained(inFlight).toOpaque()
        var opts = jsOptions()
        jsOptions_Init(&opts)
        opts.PublishAsync.MaxPending = Int64(maxPending)
        opts.PublishAsync.StallWait = 60_000
        opts.PublishAsync.AckHandlerClosure = inFlightPointer
        opts.PublishAsync.AckHandler = { _, msg, pubAck, pubAckError, closure in
            guard let msg else { return }
            defer { natsMsg_Destroy(msg) }
            guard let closure else { return }
            let inFlight = Unmanaged<InFlightAcks>.fromOpaque(closure).takeUnretainedValue()
            guard let (batch, index) = inFlight.take(msg) else { return }
            if let pubAck {
                batch.fulfil(
                    index, .success(PublishAck(sequence: pubAck.pointee.Sequence, duplicate: pubAck.pointee.Duplicate)))
            } else if let pubAckError {
                let text = pubAckError.pointee.ErrText.map { String(cString: $0) } ?? "no acknowledgement"
                batch.fulfil(
                    index,
                    .failure(
                        NATSError(
                            status: Int32(pubAckError.pointee.Err.rawValue),
                            jetStreamCode: Int(pubAckError.pointee.ErrCode.rawValue), message: text)))
            } else {
                batch.fulfil(index, .failure(NATSError(message: "append acknowledged with neither ack nor error")))
            }
        }
        var js: OpaquePointer?
        let s = natsConnection_JetStream(&js, connection.handle, &opts)
        guard s == NATS_OK, let js else {
            let error = natsLastError(s, "opening the JetStream context")
            Unmanaged<InFlightAcks>.fromOpaque(inFlightPointer).release()
            throw error
        }
        self.js = js
    }

    /// `duration` in whole milliseconds for cnats' `MaxWait`, rounded up and at least 1: cnats takes 0 as "wait
    /// forever", so a timeout under a millisecond must not become 0. Durations too long for it wait as long as it can.
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 1 }
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow else { return Int64.max }
        let fraction = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        let (total, overflowAgain) = whole.addingReportingOverflow(fraction)
        return overflowAgain ? Int64.max : max(total, 1)
    }

    deinit {
        inFlight.failAll(NATSError(message: "the publisher was closed before the append was acknowledged"))
        let context = ContextHandle(pointer: js)
        DeferredRelease.afterPendingMessages(of: connection) { jsCtx_Destroy(context.pointer) }
        // `inFlight` is not released: cnats may still deliver a late acknowledgement to it on its own thread,
        // and offers no callback saying it will not. One small object per publisher, which lives as long as its
        // connection in practice.
        _ = inFlightPointer
    }

    /// Appends the messages in order and returns each one's acknowledgement (or error), in the same order.
    public func publish(_ messages: [OutgoingMessage]) async -> [Result<PublishAck, NATSError>] {
        if messages.isEmpty { return [] }
        return await withCheckedContinuation { continuation in
            let batch = AckBatch(count: messages.count, continuation: continuation)
            queue.async { [self] in
                for (index, message) in messages.enumerated() {
                    publishOne(message, batch: batch, index: index)
                }
            }
        }
    }

    /// Appends one message and waits for its acknowledgement.
    public func publish(_ message: OutgoingMessage) async throws -> PublishAck {
        try await withUnsafeContinuation { continuation in
            let waiter = SingleAck(continuation)
            queue.async { [self] in publishOne(message, batch: waiter, index: 0) }
        }.get()
    }

    /// Appends the messages as one atomic batch (nats-server 2.12+, a stream with `allow_atomic`): all are stored,
    /// one after another, or none is. Each is sent as it is (its id, its expected sequence) with `Nats-Batch-Id`
    /// and `Nats-Batch-Sequence`; the last also carries `Nats-Batch-Commit`, and its acknowledgement (the sequence of
    /// the last message) or refusal is the batch's. Only the commit asks for an answer: a message refused before
    /// it abandons the batch, and the commit is refused. A server without atomic batches would store each message
    /// on its own: the caller asks only of a stream whose configuration says it has them.
    public func publishAtomically(_ messages: [OutgoingMessage], batchID: String) async -> Result<PublishAck, NATSError>
    {
        guard let last = messages.last else { return .failure(NATSError(message: "an empty batch")) }
        var commit = last
        commit.headers["Nats-Batch-Id"] = batchID
        commit.headers["Nats-Batch-Sequence"] = String(messages.count)
        commit.headers["Nats-Batch-Commit"] = "1"
        let committed = commit
        return await withCheckedContinuation { continuation in
            let batch = AckBatch(count: 1) { continuation.resume(returning: $0[0]) }
            queue.async { [self] in
                for (index, message) in messages.dropLast().enumerated() {
                    do {
                        let msg = try CNATSMessage(subject: message.subject, reply: nil, payload: message.payload)
                        try Self.setHeaders(of: message, on: msg)
                        try msg.setHeader("Nats-Batch-Id", batchID)
                        try msg.setHeader("Nats-Batch-Sequence", String(index + 1))
                        let s = natsConnection_PublishMsg(connection.handle, msg.pointer)
                        guard s == NATS_OK else { throw natsLastError(s, "appending to \(message.subject)") }
                    } catch {
                        // Not committed: the server drops what it staged of the batch.
                        batch.fulfil(0, .failure(error as? NATSError ?? NATSError(message: "\(error)")))
                        return
                    }
                }
                publishOne(committed, batch: batch, index: 0)
            }
        }
    }

    static func setHeaders(of message: OutgoingMessage, on msg: CNATSMessage) throws {
        if let id = message.messageID { try msg.setHeader("Nats-Msg-Id", id) }
        if let expected = message.expectedLastSubjectSequence {
            try msg.setHeader("Nats-Expected-Last-Subject-Sequence", String(expected))
        }
        for (key, value) in message.headers { try msg.setHeader(key, value) }
    }

    private func publishOne(_ message: OutgoingMessage, batch: any AckWaiter, index: Int) {
        let msg: CNATSMessage
        do {
            msg = try CNATSMessage(subject: message.subject, reply: nil, payload: message.payload)
            try Self.setHeaders(of: message, on: msg)
        } catch let error as NATSError {
            batch.fulfil(index, .failure(error))
            return
        } catch {
            batch.fulfil(index, .failure(NATSError(message: "\(error)")))
            return
        }
        guard let raw = msg.pointer else {
            batch.fulfil(index, .failure(NATSError(message: "appending to \(message.subject): no message was built")))
            return
        }
        inFlight.register(raw, batch, index)
        var pubOpts = jsPubOptions()
        jsPubOptions_Init(&pubOpts)
        pubOpts.MaxWait = ackTimeoutMs
        var pointer: OpaquePointer? = raw
        let s = js_PublishMsgAsync(js, &pointer, &pubOpts)
        if s == NATS_OK {
            _ = msg.release()  // the library owns it now; the ack handler frees it
        } else {
            let error = natsLastError(s, "appending to \(message.subject)")
            _ = inFlight.take(raw)
            batch.fulfil(index, .failure(error))
        }
    }
}

/// A JetStream context handed to the thread that destroys it.
private struct ContextHandle: @unchecked Sendable { let pointer: OpaquePointer }
