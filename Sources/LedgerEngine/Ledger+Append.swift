import Foundation
public import LedgerCore
public import LedgerNATS
import Logging
import Synchronization

/// Where one of Ledgerflow's own events is appended.
public enum EventAddress: Sendable, Equatable {
    /// A run's subject (`ledger.run.<id>`).
    case run(id: String, flowID: String, flowVersion: Int)
    /// A flow's subject (`ledger.flow.<id>`).
    case flow(id: String)
    /// The record of the inbound message at `sequence` that was refused (`ledger.rejected.<sequence>`).
    case rejected(sequence: UInt64)
    /// An inbound event no handler took (`ledger.unhandled.<sequence>`).
    case unhandled(sequence: UInt64)
    /// The outcome of one firing of a flow's schedule (`ledger.firing.<flow>.<nominal_ms>`).
    case firing(flowID: String, nominalMillis: Int64)
    /// Pauses and resumes of a flow's schedule (`ledger.schedule.<flow>`).
    case schedule(flowID: String)

    public var subject: String {
        switch self {
        case .firing(let flow, let millis): return Subjects.firing(flow, nominalMillis: millis)
        case .schedule(let flow): return Subjects.schedule(flow)
        case .run(let id, _, _): return Subjects.run(id)
        case .flow(let id): return Subjects.flow(id)
        case .rejected(let sequence): return Subjects.rejected(sequence)
        case .unhandled(let sequence): return Subjects.unhandled(sequence)
        }
    }
}

/// How hard an append tries.
public enum AppendRetry: Sendable {
    /// One try: a transport failure is thrown (a person is waiting for the answer).
    case once
    /// Transport failures are retried with backoff until NATS answers (the engine's own work).
    case untilAnswered
}

/// Why an event was appended, and what it belongs to (CloudEvents `correlationid`, `causationid`, `traceparent`).
public struct EventContext: Sendable, Equatable {
    public var correlationID: String?
    public var causationID: String?
    public var traceparent: String?

    public init(correlationID: String? = nil, causationID: String? = nil, traceparent: String? = nil) {
        self.correlationID = correlationID
        self.causationID = causationID
        self.traceparent = traceparent
    }
}

/// Where a sent message was stored in the log.
public struct SentMessage: Sendable, Equatable {
    public var sequence: UInt64
    /// The log had this message id already (within its duplicate window): it was not stored again.
    public var duplicate: Bool
}

/// An event as it stands in the log.
public struct AppendedEvent: Sendable {
    public var event: LedgerEvent
    public var sequence: UInt64
    /// The server had stored this very event before (a retried append whose first try landed).
    public var duplicate: Bool
    /// Its place and hash: the next append to the same subject carries the hash as `prevhash` (`EventChain`).
    public var link: ChainLink

    public init(event: LedgerEvent, sequence: UInt64, duplicate: Bool, link: ChainLink) {
        self.event = event
        self.sequence = sequence
        self.duplicate = duplicate
        self.link = link
    }
}

extension Ledger {
    /// Appends one of Ledgerflow's own events: encoded once here, with a fresh id unless one is given, and, with
    /// `expectedLastSequence`, only when the subject's last message is at that sequence (0: the subject is empty),
    /// so two writers can never both append to the same run or flow. A stale expected sequence and a message too
    /// large are thrown at once (see `NATSError.jetStreamError`): retrying cannot change them.
    ///
    /// On a run's or a flow's subject the event carries `prevhash`, the hash of the subject's message at
    /// `expectedLastSequence`: `previous` when it is that message's link (what the appender kept of its last
    /// append), else read from the log (one request; a subject whose last message is elsewhere is refused as a
    /// stale expected sequence, as JetStream would refuse it).
    @discardableResult
    public func append(
        _ body: LedgerEvent.Body, to address: EventAddress, expectedLastSequence: UInt64?, previous: ChainLink? = nil,
        id: String = EventID.make(), context: EventContext = EventContext(), retry: AppendRetry = .untilAnswered
    ) async throws -> AppendedEvent {
        let time = Timestamp.now()
        var runID: String?
        var flowID: String?
        var flowVersion: Int?
        var chained = false
        switch address {
        case .run(let run, let flow, let version):
            (runID, flowID, flowVersion) = (run, flow, version)
            chained = true
        case .flow(let flow):
            flowID = flow
            chained = true
        case .rejected, .unhandled: break
        case .firing(let flow, _), .schedule(let flow): flowID = flow
        }
        var prevhash: String?
        if chained, let expected = expectedLastSequence, expected > 0 {
            if let previous, previous.sequence == expected {
                prevhash = previous.hash
            } else {
                prevhash = try await hashOfLastMessage(on: address.subject, expected: expected, retry: retry)
            }
        }
        let payload = body.eventBytes(
            id: id, time: time, runid: runID, flowid: flowID, flowversion: flowVersion,
            correlationid: context.correlationID, causationid: context.causationID, traceparent: context.traceparent,
            prevhash: prevhash)
        let ack = try await append(
            OutgoingMessage(
                subject: address.subject, payload: payload, messageID: id,
                expectedLastSubjectSequence: expectedLastSequence),
            retry: retry)
        let event = LedgerEvent(id: id, type: body.type, time: time, runid: runID, flowid: flowID, body: body)
        var link = ChainLink(sequence: ack.sequence, payload: payload)
        if ack.duplicate, chained, let stored = try? await api.message(stream: stream, sequence: ack.sequence) {
            // Stored before under the same id: the next event names the bytes the log holds, whatever they are.
            link = ChainLink(sequence: ack.sequence, payload: stored.payload)
        }
        return AppendedEvent(event: event, sequence: ack.sequence, duplicate: ack.duplicate, link: link)
    }

    /// Appends several events of one run together, as one atomic batch (`atomicBatches`): all are stored, one
    /// after another, or none is; the first only when the run's last message is at `expectedLastSequence`, so a
    /// batch never lands beside another writer's events. Each event carries the hash of the one before it (the
    /// first, that of `previous` or of the log's last message), all share `time`, and one acknowledgement answers
    /// for all. One try: any failure is thrown (a stale expected sequence as `wrongLastSequence`, an event too
    /// large as `messageTooLarge` before anything is sent) and the caller decides again from the log.
    public func appendAtomically(
        _ events: [(body: LedgerEvent.Body, context: EventContext)], run runID: String, flowID: String,
        flowVersion: Int, expectedLastSequence: UInt64, previous: ChainLink?, time: String
    ) async throws -> [AppendedEvent] {
        guard atomicBatches, !events.isEmpty else {
            throw NATSError(message: "atomic batches are not available on this stream")
        }
        let subject = Subjects.run(runID)
        var prevhash: String?
        if expectedLastSequence > 0 {
            if let previous, previous.sequence == expectedLastSequence {
                prevhash = previous.hash
            } else {
                prevhash = try await hashOfLastMessage(on: subject, expected: expectedLastSequence, retry: .once)
            }
        }
        var messages: [OutgoingMessage] = []
        var written: [(id: String, payload: [UInt8])] = []
        messages.reserveCapacity(events.count)
        for (index, (body, context)) in events.enumerated() {
            let id = EventID.make()
            let payload = body.eventBytes(
                id: id, time: time, runid: runID, flowid: flowID, flowversion: flowVersion,
                correlationid: context.correlationID, causationid: context.causationID,
                traceparent: context.traceparent, prevhash: prevhash)
            prevhash = EventChain.hash(of: payload)
            let message = OutgoingMessage(
                subject: subject, payload: payload, messageID: id,
                expectedLastSubjectSequence: index == 0 ? expectedLastSequence : nil)
            try checkSize(message)
            messages.append(message)
            written.append((id, payload))
        }
        guard connection.isConnected else {
            throw NATSError(
                message: "NATS at \(connection.url) is not reachable right now (reconnecting); try again shortly")
        }
        for message in messages { try failpoints.beforeAppend?(message) }
        let ack = try await publisher.publishAtomically(messages, batchID: EventID.make()).get()
        guard !ack.duplicate else {
            // Fresh ids are never duplicates: the log holds something else than this batch; read it again.
            throw NATSError(message: "\(subject): the batch was taken for one stored before")
        }
        for message in messages { try failpoints.afterAppend?(message) }
        // The batch is stored contiguously, its last message at the acknowledged sequence.
        let (first, overflow) = ack.sequence.subtractingReportingOverflow(UInt64(events.count - 1))
        guard !overflow, first > expectedLastSequence else {
            throw NATSError(message: "\(subject): the batch was acknowledged at \(ack.sequence), before its own place")
        }
        return events.enumerated().map { index, item in
            let sequence = first + UInt64(index)
            let event = LedgerEvent(
                id: written[index].id, type: item.body.type, time: time, runid: runID, flowid: flowID,
                body: item.body)
            return AppendedEvent(
                event: event, sequence: sequence, duplicate: ack.duplicate,
                link: ChainLink(sequence: sequence, payload: written[index].payload))
        }
    }

    /// The hash of the last message on `subject`, which must be at `expected`; a transport failure is retried as
    /// `retry` says.
    func hashOfLastMessage(on subject: String, expected: UInt64, retry: AppendRetry) async throws -> String {
        var delay: Duration = .milliseconds(50)
        while true {
            do {
                guard let last = try await api.lastMessage(stream: stream, subject: subject),
                    last.seq == expected
                else {
                    throw NATSError(
                        jetStream: .wrongLastSequence,
                        message: "\(subject): its last message is not at the expected sequence \(expected)")
                }
                return EventChain.hash(of: last.payload)
            } catch let error as NATSError where error.jetStreamError == nil && retry == .untilAnswered {
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// Sends a command or an announcement to other services on `subject`. When the stream covers the subject the
    /// event is appended (its id as `Nats-Msg-Id`, so a command re-sent after a restart is stored once; with
    /// `expectingEmptySubject`, only when nothing is on that subject yet) and where it was stored returned; otherwise it is
    /// published as a plain NATS message and nil returned.
    @discardableResult
    public func send<Payload: Codable & Sendable>(
        _ event: CloudEvent<Payload>, on subject: String, expectingEmptySubject: Bool = false,
        retry: AppendRetry = .untilAnswered
    ) async throws -> SentMessage? {
        let payload = try EventCodec().encode(event)
        return try await send(
            payload: payload, id: event.id, on: subject, expectingEmptySubject: expectingEmptySubject, retry: retry)
    }

    /// Sends bytes that are already an encoded message (the CLI's `publish`), as `send` does.
    @discardableResult
    public func send(
        payload: [UInt8], id: String, on subject: String, expectingEmptySubject: Bool = false,
        retry: AppendRetry
    ) async throws -> SentMessage? {
        guard covers(subject) else {
            try connection.publish(subject: subject, payload: payload)
            if retry == .once { try await connection.flush() }
            return nil
        }
        let message = OutgoingMessage(
            subject: subject, payload: payload, messageID: id,
            expectedLastSubjectSequence: expectingEmptySubject ? 0 : nil)
        let ack = try await append(message, retry: retry)
        return SentMessage(sequence: ack.sequence, duplicate: ack.duplicate)
    }

    /// Whether messages on `subject` are stored in the log.
    public func covers(_ subject: String) -> Bool {
        configuration.subjects.contains { subjectMatches(pattern: $0, subject: subject) }
    }

    /// Asks another service on `subject` and returns its answer's bytes (not recorded in the log).
    public func request<Payload: Codable & Sendable>(
        _ event: CloudEvent<Payload>, on subject: String, timeout: Duration
    ) async throws
        -> [UInt8]
    {
        let payload = try EventCodec().encode(event)
        return try await connection.request(subject: subject, payload: payload, timeout: timeout).payload
    }

    /// Answers a request on its reply subject (a plain NATS message).
    public func reply<Payload: Codable & Sendable>(_ event: CloudEvent<Payload>, to subject: String) throws {
        try connection.publish(subject: subject, payload: try EventCodec().encode(event))
    }

    /// Requests on `subject`, shared with the other members of `queue`.
    public func requests(on subject: String, queue: String) throws -> IncomingRequests {
        IncomingRequests(subscription: try connection.subscribe(subject: subject, queue: queue))
    }

    /// Appends one message as it is; `retry` decides what a transport failure does.
    func append(_ message: OutgoingMessage, retry: AppendRetry = .once) async throws -> PublishAck {
        switch retry {
        case .once: return try await appendOnce(message)
        case .untilAnswered: return try await appendUntilAnswered(message)
        }
    }

    /// Appends messages pipelined: all are sent, then all acknowledgements awaited (the benchmarks' raw path).
    public func appendPipelined(_ messages: [OutgoingMessage]) async -> [Result<PublishAck, NATSError>] {
        await publisher.publish(messages)
    }

    func appendOnce(_ message: OutgoingMessage) async throws -> PublishAck {
        try checkSize(message)
        // While the connection is down, an append fails at once instead of waiting out its acknowledgement's
        // timeout: a person gets a 503 to retry, and the engine's own appends back off and try again.
        guard connection.isConnected else {
            throw NATSError(
                message: "NATS at \(connection.url) is not reachable right now (reconnecting); try again shortly")
        }
        try failpoints.beforeAppend?(message)
        let ack: PublishAck
        do {
            ack = try await publisher.publish(message)
        } catch let error as NATSError where error.isRefusedMessage {
            // The server's max_payload (or the subject) refuses it: as final as the stream's own size limit.
            throw NATSError(
                status: error.status, jetStream: .messageTooLarge, message: "\(message.subject): \(error.message)")
        }
        try failpoints.afterAppend?(message)
        return ack
    }

    /// Room kept for the headers (`Nats-Msg-Id`, expected sequence) and the subject in the stream's size limit.
    static let headerAllowance = 1024

    /// An append that can never succeed (larger than the stream accepts) fails at once, and is never retried.
    func checkSize(_ message: OutgoingMessage) throws {
        let limit = Int(configuration.maxMessageSize) - Self.headerAllowance
        if message.payload.count > limit {
            throw NATSError(
                jetStream: .messageTooLarge,
                message:
                    "the message for \(message.subject) is \(message.payload.count) bytes; the log accepts at most \(limit)"
            )
        }
    }

    /// Retries transport failures with backoff until NATS answers; refusals by JetStream are thrown at once.
    func appendUntilAnswered(_ message: OutgoingMessage) async throws -> PublishAck {
        var delay: Duration = .milliseconds(50)
        var attempts = 0
        while true {
            do {
                return try await appendOnce(message)
            } catch let error as NATSError where error.isWrongLastSequence && attempts > 0 {
                // A try whose acknowledgement was lost may have landed; this retry then finds the subject moved
                // on, by this very message. That is not a conflict: the message is in the log.
                if let landed = try await landedEarlier(message) { return landed }
                throw error
            } catch let error as NATSError where error.jetStreamError == nil {
                attempts += 1
                if attempts == 1 || attempts % 20 == 0 {
                    logger.warning(
                        "append failed; retrying until NATS answers",
                        metadata: [LogKey.subject: "\(message.subject)", LogKey.error: "\(error.message)"])
                }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// Where `message` (appended with an id and an expected last sequence) was stored by an earlier try, if it was:
    /// the first message on its subject after the expected sequence, when it is this message (the same bytes: the
    /// reader leaves headers off the engine's own subjects, and every event's id is in its payload).
    func landedEarlier(_ message: OutgoingMessage) async throws -> PublishAck? {
        guard let expected = message.expectedLastSubjectSequence else { return nil }
        guard let next = try await read(subject: message.subject, from: expected + 1, limit: 1).first,
            next.payload == message.payload
        else { return nil }
        return PublishAck(sequence: next.sequence, duplicate: true)
    }

    /// The message at `sequence`, nil when there is none (never written, or deleted).
    public func message(at sequence: UInt64) async throws -> LogMessage? {
        try await api.message(stream: stream, sequence: sequence).map {
            LogMessage(sequence: $0.seq, subject: $0.subject, payload: $0.payload, time: $0.time)
        }
    }

    /// The first message on `subject`, nil when it is empty.
    public func firstMessage(on subject: String) async throws -> LogMessage? {
        try await api.firstMessage(stream: stream, subject: subject).map {
            LogMessage(sequence: $0.seq, subject: $0.subject, payload: $0.payload, time: $0.time)
        }
    }

    /// Makes the durable consumer `config` names with `config`: created, or updated in place when it exists with
    /// another configuration the server lets change (its filter, limits, description), so its position survives;
    /// one the server will not change is kept as it is (logged).
    public func ensureDurableConsumer(_ config: ConsumerConfig) async throws {
        guard let name = config.durable_name else { throw RuntimeError("a durable consumer needs a name") }
        do {
            try await api.createConsumer(stream: stream, config)
        } catch let error as NATSError
            where error.jetStreamError == .consumerAlreadyExists || error.jetStreamError == .consumerNameInUse
        {
            logger.info(
                "consumer exists with another configuration; using it",
                metadata: [LogKey.consumer: "\(name)", LogKey.error: "\(error.message)"])
        }
    }

    /// A pull subscription to the durable consumer `name` (made by `ensureDurableConsumer`).
    public func pullSubscription(to name: String) throws -> JetStreamPullSubscription {
        try JetStreamPullSubscription(connection: connection, stream: stream, consumer: name)
    }
}

/// Requests arriving on a subject, as an `AsyncSequence`; ends when `stop()` is called.
public struct IncomingRequests: AsyncSequence, Sendable {
    public typealias Element = IncomingRequest
    let subscription: NATSSubscription

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: subscription.messages.makeAsyncIterator())
    }

    /// Stops receiving; the sequence ends.
    public func stop() {
        subscription.unsubscribe()
    }

    /// Yields each request as it arrives.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncStream<NATSMessage>.Iterator
        public mutating func next() async -> IncomingRequest? {
            guard let message = await base.next() else { return nil }
            return IncomingRequest(payload: message.payload, replySubject: message.reply, headers: message.headers)
        }
    }
}

/// One request: its bytes and where the answer goes.
public struct IncomingRequest: Sendable {
    public var payload: [UInt8]
    public var replySubject: String?
    /// The message's NATS headers (`Authorization: Bearer <token>` for `automation.flow.run`).
    public var headers: [String: String] = [:]
}

/// Faults the tests inject into appends.
public final class LedgerFailpoints: Sendable {
    public typealias Hook = @Sendable (OutgoingMessage) throws -> Void
    private let before = LockedHook<Hook>()
    private let after = LockedHook<Hook>()
    /// Called before a message is sent; throwing fails the append before anything reaches the log.
    public var beforeAppend: Hook? {
        get { before.function }
        set { before.function = newValue }
    }
    /// Called after an append was acknowledged; throwing makes the caller see a failure of an append that landed
    /// (as when the acknowledgement is lost).
    public var afterAppend: Hook? {
        get { after.function }
        set { after.function = newValue }
    }
    private let lost = LockedHook<@Sendable (UInt64) -> Bool>()
    /// Called by log readers for each delivered message with its stream sequence; returning true drops the
    /// delivery as if it were lost on the way (a reconnect, a dropped packet): the reader must notice and read again.
    public var loseDelivery: (@Sendable (UInt64) -> Bool)? {
        get { lost.function }
        set { lost.function = newValue }
    }
}
