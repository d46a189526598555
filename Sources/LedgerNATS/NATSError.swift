import CNATS

/// An error from NATS or JetStream, carrying the C status, the JetStream error code and the server's text.
public struct NATSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The cnats `natsStatus` (0 when the error came from the server's JSON answer).
    public var status: Int32
    /// The JetStream API error code (`err_code`), 0 when there is none.
    public var jetStreamCode: Int
    /// What went wrong, as the library or the server said it.
    public var message: String
    public var file: String
    public var line: Int

    public init(
        status: Int32 = 0, jetStream: JetStreamErrorCode, message: String, file: String = #fileID, line: Int = #line
    ) {
        self.init(status: status, jetStreamCode: jetStream.rawValue, message: message, file: file, line: line)
    }

    public init(status: Int32 = 0, jetStreamCode: Int = 0, message: String, file: String = #fileID, line: Int = #line) {
        self.status = status
        self.jetStreamCode = jetStreamCode
        self.message = message
        self.file = file
        self.line = line
    }

    /// The JetStream error, by name.
    public var jetStreamError: JetStreamErrorCode? {
        jetStreamCode == 0 ? nil : JetStreamErrorCode(rawValue: jetStreamCode)
    }

    /// The append was refused because the subject's last sequence was not the expected one.
    public var isWrongLastSequence: Bool { jetStreamError == .wrongLastSequence }
    /// No reply arrived in time.
    public var isTimeout: Bool { status == NATSStatus.timeout }
    /// No server could be reached (at connect).
    public var isUnreachable: Bool { status == NATSStatus.noServer }
    /// The server refused the connection's credentials (wrong, missing or not allowed): trying again cannot help.
    public var isAuthorizationFailure: Bool { status == NATSStatus.authFailed }
    /// The TLS handshake failed (a certificate not trusted or not accepted, TLS asked on one side only).
    public var isTLSFailure: Bool { status == NATSStatus.sslError }

    static func isAuthorizationFailure(status: Int32, text: String) -> Bool {
        let lower = text.lowercased()
        return status == NATSStatus.authFailed || lower.contains("authorization violation")
            || lower.contains("authentication") || lower.contains("user authentication expired")
    }

    static func isTLSFailure(status: Int32, text: String) -> Bool {
        let lower = text.lowercased()
        return status == NATSStatus.sslError || lower.contains("ssl") || lower.contains("tls")
            || lower.contains("certificate") || lower.contains("secure connection")
    }

    /// Nothing listens on the subject of a request.
    public var isNoResponders: Bool { status == NATSStatus.noResponders }

    public var description: String {
        var text = "NATS error: \(message)"
        if jetStreamCode != 0 { text += " (JetStream code \(jetStreamCode))" }
        if status != 0 { text += " [status \(status)]" }
        return text
    }

    public static func == (lhs: NATSError, rhs: NATSError) -> Bool {
        lhs.status == rhs.status && lhs.jetStreamCode == rhs.jetStreamCode && lhs.message == rhs.message
    }
}

/// JetStream API error codes (`err_code`) Ledgerflow acts on, by name.
public struct JetStreamErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let streamNotFound = JetStreamErrorCode(rawValue: 10059)
    public static let streamNameInUse = JetStreamErrorCode(rawValue: 10058)
    public static let wrongLastSequence = JetStreamErrorCode(rawValue: 10071)
    /// The message is larger than the stream accepts (also used for a payload the server's max_payload refuses).
    public static let messageTooLarge = JetStreamErrorCode(rawValue: 10054)
    public static let consumerAlreadyExists = JetStreamErrorCode(rawValue: 10148)
    public static let consumerNameInUse = JetStreamErrorCode(rawValue: 10013)
    public static let consumerNotFound = JetStreamErrorCode(rawValue: 10014)
    public static let noMessageFound = JetStreamErrorCode(rawValue: 10037)

    public var description: String { "JetStream error \(rawValue)" }
}

/// cnats statuses the Swift side tells apart (from `natsStatus`, so they cannot drift from the library's numbers).
enum NATSStatus {
    static let timeout = Int32(NATS_TIMEOUT.rawValue)
    static let noResponders = Int32(NATS_NO_RESPONDERS.rawValue)
    static let noServer = Int32(NATS_NO_SERVER.rawValue)
    static let authFailed = Int32(NATS_CONNECTION_AUTH_FAILED.rawValue)
    static let sslError = Int32(NATS_SSL_ERROR.rawValue)
}
