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

    public init(status: Int32 = 0, jetStreamCode: Int = 0, message: String, file: String = #fileID, line: Int = #line) {
        self.status = status
        self.jetStreamCode = jetStreamCode
        self.message = message
        self.file = file
        self.line = line
    }

    /// The append was refused because the subject's last sequence was not the expected one (JetStream 10071).
    public var isWrongLastSequence: Bool { jetStreamCode == 10071 }
    /// No reply arrived in time.
    public var isTimeout: Bool { status == 7 /* NATS_TIMEOUT */ }

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
