import CNATS
import Foundation

/// The raw ceilings the benchmarks compare against: the C client used directly, with no Swift bookkeeping.
public enum RawBaseline {
    /// Publishes every payload with `js_PublishMsgAsync` (with `Nats-Msg-Id`), then waits with
    /// `js_PublishAsyncComplete`. Returns the number of failed acknowledgements. Blocking: call off the pool.
    public static func publishAsync(connection: NATSConnection, subject: String, payloads: [[UInt8]], messageIDs: [String]?) throws -> Int {
        var opts = jsOptions()
        jsOptions_Init(&opts)
        opts.PublishAsync.MaxPending = 65_536
        opts.PublishAsync.StallWait = 60_000
        var js: OpaquePointer?
        var s = natsConnection_JetStream(&js, connection.handle, &opts)
        guard s == NATS_OK, let js else { throw natsLastError(s, "opening the JetStream context") }
        defer { jsCtx_Destroy(js) }
        for (index, payload) in payloads.enumerated() {
            let msg = try CNATSMessage(subject: subject, reply: nil, payload: payload)
            if let ids = messageIDs { try msg.setHeader("Nats-Msg-Id", ids[index]) }
            var pointer = msg.pointer
            s = js_PublishMsgAsync(js, &pointer, nil)
            guard s == NATS_OK else { throw natsLastError(s, "raw publish") }
            _ = msg.release()
        }
        var completeOpts = jsPubOptions()
        jsPubOptions_Init(&completeOpts)
        completeOpts.MaxWait = 120_000
        s = js_PublishAsyncComplete(js, &completeOpts)
        guard s == NATS_OK else { throw natsLastError(s, "waiting for raw acknowledgements") }
        var pending = natsMsgList()
        if js_PublishAsyncGetPendingList(&pending, js) == NATS_OK {
            defer { natsMsgList_Destroy(&pending) }
            return Int(pending.Count)
        }
        return 0
    }

    /// Reads `count` messages on `subject` through cnats' ordered push consumer and discards them: the ceiling of a
    /// replay. Blocking: call off the pool.
    public static func orderedRead(connection: NATSConnection, stream: String, subject: String, count: Int) throws -> Int {
        var js: OpaquePointer?
        var s = natsConnection_JetStream(&js, connection.handle, nil)
        guard s == NATS_OK, let js else { throw natsLastError(s, "opening the JetStream context") }
        defer { jsCtx_Destroy(js) }
        var subOpts = jsSubOptions()
        jsSubOptions_Init(&subOpts)
        subOpts.Ordered = true
        var sub: OpaquePointer?
        var jerr = jsErrCode(rawValue: 0)
        s = stream.withCString { name in
            subOpts.Stream = name
            return js_SubscribeSync(&sub, js, subject, nil, &subOpts, &jerr)
        }
        guard s == NATS_OK, let sub else { throw natsLastError(s, "ordered consumer on \(subject)") }
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
