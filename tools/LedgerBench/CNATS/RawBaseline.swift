import CNATS
import Foundation

/// Why a raw cnats call failed: the C status and cnats' own text.
struct CNATSRawError: Error, CustomStringConvertible {
    var status: natsStatus
    var context: String
    var text: String

    /// Reads the calling thread's last cnats error; call it in the same synchronous function as the failing call.
    init(_ status: natsStatus, _ context: String) {
        self.status = status
        self.context = context
        let last = nats_GetLastError(nil).map { String(cString: $0) } ?? ""
        text = last.isEmpty ? (natsStatus_GetText(status).map { String(cString: $0) } ?? "") : last
    }

    var description: String { "cnats: \(context): \(text) [status \(status.rawValue)]" }
}

/// One raw `natsConnection*` of the C client, destroyed in `deinit`: the benchmarks' ceilings are measured on a
/// connection of their own, so nothing of Ledgerflow's adapter is in the way. It sends as soon as it can
/// (`natsOptions_SetSendAsap`), as the adapter's connection does, so a ratio measures the Swift side alone and not
/// the choice of latency over batching.
final class CNATSRawConnection {
    private let handle: OpaquePointer

    /// Connects with `natsConnection_Connect`. Blocking: call off the pool.
    init(url: String) throws {
        var s = nats_Open(-1)
        guard s == NATS_OK else { throw CNATSRawError(s, "opening the C library") }
        var opts: OpaquePointer?
        s = natsOptions_Create(&opts)
        guard s == NATS_OK, let opts else { throw CNATSRawError(s, "creating connection options") }
        defer { natsOptions_Destroy(opts) }
        s = natsOptions_SetURL(opts, url)
        if s == NATS_OK { s = natsOptions_SetSendAsap(opts, true) }
        guard s == NATS_OK else { throw CNATSRawError(s, "setting connection options") }
        var conn: OpaquePointer?
        s = natsConnection_Connect(&conn, opts)
        guard s == NATS_OK, let conn else { throw CNATSRawError(s, "connecting to \(url)") }
        handle = conn
    }

    deinit { natsConnection_Destroy(handle) }

    /// A JetStream context on this connection, valid only inside `body`.
    private func withJetStream<T>(
        _ options: UnsafeMutablePointer<jsOptions>?, _ body: (OpaquePointer) throws -> T
    ) throws -> T {
        var js: OpaquePointer?
        let s = natsConnection_JetStream(&js, handle, options)
        guard s == NATS_OK, let js else { throw CNATSRawError(s, "opening the JetStream context") }
        defer { jsCtx_Destroy(js) }
        return try body(js)
    }

    /// Publishes every payload with `js_PublishMsgAsync` (with `Nats-Msg-Id`), then waits with
    /// `js_PublishAsyncComplete`. Returns the number of failed acknowledgements. Blocking: call off the pool.
    func publishAsync(subject: String, payloads: [[UInt8]], messageIDs: [String]?) throws -> Int {
        var opts = jsOptions()
        jsOptions_Init(&opts)
        opts.PublishAsync.MaxPending = 65_536
        opts.PublishAsync.StallWait = 60_000
        return try withJetStream(&opts) { js in
            for (index, payload) in payloads.enumerated() {
                var msg: OpaquePointer?
                var s = payload.withUnsafeBufferPointer { bytes in
                    bytes.withMemoryRebound(to: CChar.self) {
                        natsMsg_Create(&msg, subject, nil, $0.baseAddress, Int32(bytes.count))
                    }
                }
                guard s == NATS_OK, let created = msg else { throw CNATSRawError(s, "creating a message") }
                if let ids = messageIDs { s = natsMsgHeader_Set(created, "Nats-Msg-Id", ids[index]) }
                // On success the library owns the message and sets `msg` to nil; otherwise it is still ours.
                if s == NATS_OK { s = js_PublishMsgAsync(js, &msg, nil) }
                if let left = msg { natsMsg_Destroy(left) }
                guard s == NATS_OK else { throw CNATSRawError(s, "raw publish") }
            }
            var completeOpts = jsPubOptions()
            jsPubOptions_Init(&completeOpts)
            completeOpts.MaxWait = 120_000
            let s = js_PublishAsyncComplete(js, &completeOpts)
            guard s == NATS_OK else { throw CNATSRawError(s, "waiting for raw acknowledgements") }
            var pending = natsMsgList()
            guard js_PublishAsyncGetPendingList(&pending, js) == NATS_OK else { return 0 }
            defer { natsMsgList_Destroy(&pending) }
            return Int(pending.Count)
        }
    }

    /// Publishes every payload with `js_Publish`, one after another, each waiting for its acknowledgement (one round
    /// trip each, as a run's own appends go). Returns the seconds each publish took. Blocking: call off the pool.
    func publishSequentially(subject: String, payloads: [[UInt8]]) throws -> [Double] {
        try withJetStream(nil) { js in
            var seconds: [Double] = []
            seconds.reserveCapacity(payloads.count)
            for payload in payloads {
                let start = ContinuousClock.now
                var ack: UnsafeMutablePointer<jsPubAck>?
                var jerr = jsErrCode(rawValue: 0)
                let s = payload.withUnsafeBytes { bytes in
                    js_Publish(&ack, js, subject, bytes.baseAddress, Int32(bytes.count), nil, &jerr)
                }
                if let ack { jsPubAck_Destroy(ack) }
                guard s == NATS_OK else { throw CNATSRawError(s, "raw sequential publish") }
                seconds.append((ContinuousClock.now - start) / .seconds(1))
            }
            return seconds
        }
    }

    /// Reads `count` messages on `subject` through cnats' ordered push consumer and discards them: the ceiling of a
    /// replay. Blocking: call off the pool.
    func orderedRead(stream: String, subject: String, count: Int) throws -> Int {
        try withJetStream(nil) { js in
            var subOpts = jsSubOptions()
            jsSubOptions_Init(&subOpts)
            subOpts.Ordered = true
            var sub: OpaquePointer?
            var jerr = jsErrCode(rawValue: 0)
            var s = stream.withCString { name in
                subOpts.Stream = name
                return js_SubscribeSync(&sub, js, subject, nil, &subOpts, &jerr)
            }
            guard s == NATS_OK, let sub else { throw CNATSRawError(s, "ordered consumer on \(subject)") }
            defer {
                natsSubscription_Unsubscribe(sub)
                natsSubscription_Destroy(sub)
            }
            _ = natsSubscription_SetPendingLimits(sub, 1_000_000, 1024 * 1024 * 1024)
            var read = 0
            while read < count {
                var msg: OpaquePointer?
                s = natsSubscription_NextMsg(&msg, sub, 5000)
                guard s == NATS_OK, let msg else { break }
                natsMsg_Destroy(msg)
                read += 1
            }
            return read
        }
    }

    /// Reads `count` messages on `subject` through a pull consumer that takes no acknowledgements
    /// (`natsSubscription_Fetch` of 1,000 at a time) and discards them: the fastest way cnats reads the log.
    /// Blocking: call off the pool.
    func pullRead(stream: String, subject: String, count: Int) throws -> Int {
        try withJetStream(nil) { js in
            var subOpts = jsSubOptions()
            jsSubOptions_Init(&subOpts)
            subOpts.Config.AckPolicy = js_AckNone
            subOpts.Config.MaxRequestBatch = 0
            var sub: OpaquePointer?
            var jerr = jsErrCode(rawValue: 0)
            let durable = "bench-pull-\(UInt32.random(in: 0...UInt32.max))"
            var s = stream.withCString { name in
                subOpts.Stream = name
                return js_PullSubscribe(&sub, js, subject, durable, nil, &subOpts, &jerr)
            }
            guard s == NATS_OK, let sub else { throw CNATSRawError(s, "pull consumer on \(subject)") }
            defer {
                natsSubscription_Unsubscribe(sub)  // deletes the consumer it created
                natsSubscription_Destroy(sub)
            }
            _ = natsSubscription_SetPendingLimits(sub, 1_000_000, 1024 * 1024 * 1024)
            var read = 0
            while read < count {
                var list = natsMsgList()
                s = natsSubscription_Fetch(&list, sub, Int32(min(1000, count - read)), 5000, &jerr)
                let got = Int(list.Count)
                natsMsgList_Destroy(&list)
                guard s == NATS_OK || got > 0 else { break }
                read += got
            }
            return read
        }
    }
}
