import CNATS
import Dispatch
import Foundation
public import LedgerCore
public import Logging
import Synchronization

/// Opens the C library once per process.
enum NATSLibrary {
    static let opened: Bool = {
        nats_Open(-1) == NATS_OK
    }()
}

/// Reads the calling thread's last cnats error; call it in the same synchronous function as the failing call.
func natsLastError(_ status: natsStatus, _ context: String, file: String = #fileID, line: Int = #line) -> NATSError {
    NATSError(
        status: Int32(status.rawValue), message: "\(context): \(natsLastErrorText(status))", file: file, line: line)
}

/// The calling thread's last cnats error text (else the status' own text).
func natsLastErrorText(_ status: natsStatus) -> String {
    var text = ""
    if let cText = nats_GetLastError(nil) {
        text = String(cString: cText)
    }
    if text.isEmpty, let statusText = natsStatus_GetText(status) {
        text = String(cString: statusText)
    }
    return withoutSourceLocation(text)
}

/// cnats' error text without the source location it starts with (`(conn.c:1905): Authorization Violation`).
func withoutSourceLocation(_ text: String) -> String {
    guard text.hasPrefix("("), let close = text.firstIndex(of: ")"), text[close...].hasPrefix("): "),
        text[..<close].contains(".c:")
    else { return text }
    return String(text[text.index(close, offsetBy: 3)...])
}

/// Runs blocking C calls on threads of their own, never on Swift's cooperative pool.
enum NATSBlocking {
    static let shared = DispatchQueue(label: "ledgerflow.nats.blocking", attributes: .concurrent)

    static func run<T: Sendable>(
        on queue: DispatchQueue? = nil, _ body: @escaping @Sendable () throws -> T
    )
        async throws -> T
    {
        try await withCheckedThrowingContinuation { continuation in
            (queue ?? shared).async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}

/// Frees what cnats may still be using on the connection's read thread. cnats 3.4.1 (Debian's) looks a
/// subscription up for an arriving message, lets go of its lock without taking a reference, and locks the
/// subscription's mutex later (nats.c issue #637, fixed in 3.6.1): destroying a subscription (or a JetStream context,
/// which destroys its own) right after unsubscribing it can free it under that thread, which then locks freed
/// memory. So the destroy waits until the read thread has handled everything that arrived before: a flush's answer
/// comes back on that same thread after them; a closed connection has no read thread left; when the flush fails
/// (reconnecting), a pause longer than the read of one message.
///
/// One thread does this for the whole process, and one flush per connection covers every release asked for before
/// it, so however many subscriptions end at once (or however long a connection is away) no more threads are held.
enum DeferredRelease {
    private struct Handle: @unchecked Sendable { let pointer: OpaquePointer }
    private struct Pending: Sendable {
        let connection: NATSConnection
        let release: @Sendable () -> Void
    }

    private static let queue = DispatchQueue(label: "ledgerflow.nats.release")
    private static let pending = Mutex<[Pending]>([])

    static func destroy(subscription: OpaquePointer, of connection: NATSConnection) {
        let handle = Handle(pointer: subscription)
        afterPendingMessages(of: connection) { natsSubscription_Destroy(handle.pointer) }
    }

    static func afterPendingMessages(of connection: NATSConnection, _ release: @escaping @Sendable () -> Void) {
        let first = pending.withLock { list in
            list.append(Pending(connection: connection, release: release))
            return list.count == 1
        }
        if first { queue.async { drain() } }
    }

    /// Releases everything asked for so far, one flush per connection.
    private static func drain() {
        let batch = pending.withLock { list in
            defer { list.removeAll() }
            return list
        }
        var connections: [ObjectIdentifier: [Pending]] = [:]
        var order: [ObjectIdentifier] = []
        for item in batch {
            let id = ObjectIdentifier(item.connection)
            if connections[id] == nil { order.append(id) }
            connections[id, default: []].append(item)
        }
        for id in order {
            guard let items = connections[id], let connection = items.first?.connection else { continue }
            // A connection that is away is not flushed (that would hold up the releases of the others).
            let closed = natsConnection_IsClosed(connection.handle)
            if closed || (connection.isConnected && natsConnection_FlushTimeout(connection.handle, 2_000) == NATS_OK) {
                for item in items { item.release() }
            } else {
                queue.asyncAfter(deadline: .now() + .seconds(2)) {
                    for item in items { item.release() }
                }
            }
        }
    }
}

/// Connection state changes reported by cnats on its own threads.
final class ConnectionEvents: Sendable {
    let connected = Atomic<Bool>(true)
    let closing = Atomic<Bool>(false)
    let logger: Logger
    /// The last error the server reported outside of a call (a permissions violation on a publish or a
    /// subscription): cnats reports those through the error handler only.
    let lastAsyncError = Mutex<String?>(nil)
    init(logger: Logger) { self.logger = logger }
}

/// One NATS connection (one `natsConnection*`, destroyed in `deinit`).
public final class NATSConnection: @unchecked Sendable {
    let handle: OpaquePointer
    private let events: ConnectionEvents
    private let eventsPointer: UnsafeMutableRawPointer
    public let url: String
    private let closed = Atomic<Bool>(false)

    private init(handle: OpaquePointer, events: ConnectionEvents, eventsPointer: UnsafeMutableRawPointer, url: String) {
        self.handle = handle
        self.events = events
        self.eventsPointer = eventsPointer
        self.url = url
    }

    /// Connects (blocking work runs off the cooperative pool) with `credentials` (user and password, token, creds or
    /// nkey, TLS). Reconnects forever once connected. A server refusing the credentials or the TLS handshake is
    /// thrown at once (`isAuthorizationFailure`, `isTLSFailure`), never taken for an unreachable server.
    public static func connect(
        url: String, name: String, logger: Logger, timeout: Duration = .seconds(5),
        credentials: NATSCredentials = .none
    ) async throws
        -> NATSConnection
    {
        try await NATSBlocking.run {
            try connectBlocking(url: url, name: name, logger: logger, timeout: timeout, credentials: credentials)
        }
    }

    static func connectBlocking(
        url: String, name: String, logger: Logger, timeout: Duration, credentials: NATSCredentials = .none
    ) throws -> NATSConnection {
        guard NATSLibrary.opened else { throw NATSError(message: "the NATS C library could not be initialised") }
        var opts: OpaquePointer?
        var s = natsOptions_Create(&opts)
        guard s == NATS_OK, let opts else { throw natsLastError(s, "creating NATS options") }
        defer { natsOptions_Destroy(opts) }
        let events = ConnectionEvents(logger: logger)
        let eventsPointer = Unmanaged.passRetained(events).toOpaque()
        // Released by the closed callback; before a connection exists nothing else can release it.
        var handedToLibrary = false
        defer { if !handedToLibrary { Unmanaged<ConnectionEvents>.fromOpaque(eventsPointer).release() } }
        // A cluster is given as a comma-separated list of its nodes' URLs: cnats then connects to one of them and
        // reconnects to any other (and to the nodes the server announces) when that one goes away.
        let servers = Self.serverList(url)
        if servers.count > 1 {
            s = withServerList(servers) { natsOptions_SetServers(opts, $0, Int32(servers.count)) }
        } else {
            s = natsOptions_SetURL(opts, servers.first ?? url)
        }
        if s == NATS_OK { s = natsOptions_SetName(opts, name) }
        if s == NATS_OK { s = natsOptions_SetTimeout(opts, Int64(timeout.components.seconds * 1000)) }
        if s == NATS_OK { s = natsOptions_SetMaxReconnect(opts, -1) }
        if s == NATS_OK { s = natsOptions_SetReconnectWait(opts, 250) }
        if s == NATS_OK { s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024) }
        // cnats otherwise holds every write up to 1 ms in its buffer "to accumulate more" (its flusher thread):
        // a run's decisions are sequential appends, so that millisecond would be paid at each one.
        if s == NATS_OK { s = natsOptions_SetSendAsap(opts, true) }
        guard s == NATS_OK else { throw natsLastError(s, "setting NATS options") }
        try credentials.apply(to: opts)
        if s == NATS_OK {
            // Errors the server sends outside of a call: a permissions violation is otherwise silent (the message
            // is dropped), so it is logged and kept.
            s = natsOptions_SetErrorHandler(
                opts,
                { nc, _, status, closure in
                    guard let closure else { return }
                    let events = Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue()
                    var cText: UnsafePointer<CChar>?
                    if let nc { _ = natsConnection_GetLastError(nc, &cText) }
                    let text =
                        cText.map { String(cString: $0) } ?? natsStatus_GetText(status).map { String(cString: $0) }
                        ?? "error \(status.rawValue)"
                    events.lastAsyncError.withLock { $0 = text }
                    if status == NATS_NOT_PERMITTED {
                        events.logger.error(
                            "NATS refused an operation of this connection: \(text); the server's permissions for this user do not allow it"
                        )
                    } else {
                        events.logger.debug("NATS reported: \(text)")
                    }
                }, eventsPointer)
        }
        if s == NATS_OK {
            s = natsOptions_SetDisconnectedCB(
                opts,
                { _, closure in
                    guard let closure else { return }
                    let events = Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue()
                    events.connected.store(false, ordering: .relaxed)
                    if !events.closing.load(ordering: .relaxed) {
                        events.logger.warning("disconnected from NATS; reconnecting")
                    }
                }, eventsPointer)
        }
        if s == NATS_OK {
            s = natsOptions_SetReconnectedCB(
                opts,
                { _, closure in
                    guard let closure else { return }
                    let events = Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue()
                    events.connected.store(true, ordering: .relaxed)
                    events.logger.info("reconnected to NATS")
                }, eventsPointer)
        }
        if s == NATS_OK {
            // The last callback cnats makes for a connection (it may run after `deinit`, on cnats' own thread):
            // only then is the box of state the callbacks share released.
            s = natsOptions_SetClosedCB(
                opts,
                { _, closure in
                    guard let closure else { return }
                    Unmanaged<ConnectionEvents>.fromOpaque(closure).release()
                }, eventsPointer)
        }
        guard s == NATS_OK else { throw natsLastError(s, "setting NATS options") }
        var conn: OpaquePointer?
        // From here on cnats may call back with the box (a failed connect leaks it rather than risk a double release).
        handedToLibrary = true
        s = natsConnection_Connect(&conn, opts)
        guard s == NATS_OK, let conn else {
            let shown = redacted(url)
            let text = natsLastErrorText(s)
            let status = Int32(s.rawValue)
            if NATSError.isAuthorizationFailure(status: status, text: text) {
                // Whatever cnats' status (it may say no server could be used), this is no reason to try again.
                throw NATSError(
                    status: NATSStatus.authFailed, message: "NATS at \(shown) refused the credentials: \(text)")
            }
            // A server that verifies clients ends a TLS connection without a certificate it accepts right after
            // the handshake, before answering the client's first PING.
            let usesTLS = credentials.usesTLS || servers.contains { $0.lowercased().hasPrefix("tls://") }
            if usesTLS, text.contains("Expected 'PONG'") {
                throw NATSError(
                    status: NATSStatus.sslError,
                    message:
                        "NATS at \(shown) closed the TLS connection before it was up (\(text)): a server that verifies clients does so when no client certificate, or one signed by a CA it does not trust, is given"
                )
            }
            if NATSError.isTLSFailure(status: status, text: text) {
                throw NATSError(
                    status: NATSStatus.sslError, message: "the TLS handshake with NATS at \(shown) failed: \(text)")
            }
            throw NATSError(
                status: status, message: "connecting to NATS at \(shown): \(text) (is nats-server running there?)")
        }
        return NATSConnection(handle: conn, events: events, eventsPointer: eventsPointer, url: redacted(url))
    }

    /// The URL with any password or token written in it replaced by `***` (`nats://user:***@host`), for logs,
    /// errors and `/health`.
    public static func redacted(_ url: String) -> String {
        url.split(separator: ",", omittingEmptySubsequences: false).map { server -> String in
            let text = String(server)
            let start = text.range(of: "://")?.upperBound ?? text.startIndex
            let authorityEnd = text[start...].firstIndex(of: "/") ?? text.endIndex
            guard let at = text[start..<authorityEnd].lastIndex(of: "@") else { return text }
            let userInfo = text[start..<at]
            let shown = userInfo.firstIndex(of: ":").map { "\(userInfo[..<$0]):***" } ?? "***"
            return text[..<start] + shown + text[at...]
        }.joined(separator: ",")
    }

    /// The last error the server reported outside of a call (a permissions violation of a publish), or nil.
    public var lastAsyncError: String? { events.lastAsyncError.withLock { $0 } }

    /// The servers of a URL that may list several, separated by commas (`nats://a:4222,nats://b:4222`).
    public static func serverList(_ url: String) -> [String] {
        url.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
    }

    deinit {
        events.closing.store(true, ordering: .relaxed)
        natsConnection_Destroy(handle)  // the closed callback releases `events` once cnats is done with it
    }

    /// Whether the connection is up right now (false while reconnecting or once closed).
    public var isConnected: Bool {
        !closed.load(ordering: .relaxed) && events.connected.load(ordering: .relaxed)
    }

    /// Closes the connection; pending work fails.
    public func close() {
        if closed.exchange(true, ordering: .relaxed) { return }
        events.closing.store(true, ordering: .relaxed)
        natsConnection_Close(handle)
    }

    /// Publishes a core NATS message (buffered by the library; does not wait for the server).
    public func publish(subject: String, payload: [UInt8], reply: String? = nil, headers: [String: String] = [:]) throws
    {
        let msg = try CNATSMessage(subject: subject, reply: reply, payload: payload)
        for (key, value) in headers { try msg.setHeader(key, value) }
        let s = natsConnection_PublishMsg(handle, msg.pointer)
        guard s == NATS_OK else { throw natsLastError(s, "publishing on \(subject)") }
    }

    /// Waits until the server has processed everything published so far.
    public func flush(timeout: Duration = .seconds(5)) async throws {
        let ms = Int64(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        try await NATSBlocking.run { [self] in
            let s = natsConnection_FlushTimeout(handle, ms)
            guard s == NATS_OK else { throw natsLastError(s, "flushing the NATS connection") }
        }
    }

    /// Sends a request and waits for its reply (off the cooperative pool).
    public func request(
        subject: String, payload: [UInt8], headers: [String: String] = [:], timeout: Duration
    )
        async throws -> NATSMessage
    {
        let ms = max(
            1, Int64(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        return try await NATSBlocking.run { [self] in
            let msg = try CNATSMessage(subject: subject, reply: nil, payload: payload)
            for (key, value) in headers { try msg.setHeader(key, value) }
            var reply: OpaquePointer?
            let s = natsConnection_RequestMsg(&reply, handle, msg.pointer, ms)
            guard s == NATS_OK, let reply else {
                if s == NATS_NO_RESPONDERS {
                    throw NATSError(status: Int32(s.rawValue), message: "no service answers on \(subject)")
                }
                throw natsLastError(s, "request on \(subject)")
            }
            defer { natsMsg_Destroy(reply) }
            return NATSMessage(copying: reply, withHeaders: true)
        }
    }

    /// Subscribes with a callback-driven buffer; iterate the returned subscription's `messages`.
    public func subscribe(subject: String, queue: String? = nil) throws -> NATSSubscription {
        try NATSSubscription(connection: self, subject: subject, queue: queue)
    }
}

/// Owns one `natsMsg*` created by Ledgerflow.
final class CNATSMessage {
    var pointer: OpaquePointer?

    init(subject: String, reply: String?, payload: [UInt8]) throws {
        var msg: OpaquePointer?
        let s = payload.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(buffer.count, 1)) { chars in
                natsMsg_Create(&msg, subject, reply, chars, Int32(buffer.count))
            }
        }
        guard s == NATS_OK, let msg else { throw natsLastError(s, "creating a message for \(subject)") }
        self.pointer = msg
    }

    func setHeader(_ key: String, _ value: String) throws {
        let s = natsMsgHeader_Set(pointer, key, value)
        guard s == NATS_OK else { throw natsLastError(s, "setting header \(key)") }
    }

    /// Hands the C message over to the library (which then frees it).
    func release() -> OpaquePointer? {
        defer { pointer = nil }
        return pointer
    }

    deinit {
        if let pointer { natsMsg_Destroy(pointer) }
    }
}

extension NATSMessage {
    /// Copies subject, reply, payload (and headers when asked) out of a C message.
    init(copying msg: OpaquePointer, withHeaders: Bool) {
        let subject = String(cString: natsMsg_GetSubject(msg))
        let reply = natsMsg_GetReply(msg).map { String(cString: $0) }
        let length = Int(natsMsg_GetDataLength(msg))
        var payload = [UInt8]()
        if length > 0, let data = natsMsg_GetData(msg) {
            payload = [UInt8](UnsafeRawBufferPointer(start: data, count: length))
        }
        var headers: [String: String] = [:]
        if withHeaders {
            var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var count: Int32 = 0
            if natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK, let keys {
                for i in 0..<Int(count) {
                    guard let key = keys[i] else { continue }
                    var value: UnsafePointer<CChar>?
                    if natsMsgHeader_Get(msg, key, &value) == NATS_OK, let value {
                        headers[String(cString: key)] = String(cString: value)
                    }
                }
                free(UnsafeMutableRawPointer(mutating: keys))
            }
            if natsMsg_IsNoResponders(msg) { headers["Status"] = "503" }
        }
        self.init(subject: subject, reply: reply, headers: headers, payload: payload)
    }
}

extension NATSError {
    /// The client refused the message itself (larger than the server's `max_payload`, or an invalid subject):
    /// sending it again cannot succeed.
    public var isRefusedMessage: Bool {
        status == Int32(NATS_MAX_PAYLOAD.rawValue) || status == Int32(NATS_INVALID_SUBJECT.rawValue)
    }
}

/// Calls `body` with the servers as a C array of C strings, valid only during the call.
private func withServerList(
    _ servers: [String], _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>) -> natsStatus
) -> natsStatus {
    let copies: [UnsafeMutablePointer<CChar>] = servers.map { server in
        let bytes = Array(server.utf8CString)
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        copy.initialize(from: bytes, count: bytes.count)
        return copy
    }
    defer { copies.forEach { $0.deallocate() } }
    var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
    return pointers.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
