/// An inbound message that was refused; the message itself stays in the log at `sequence`.
public struct InboundMessageRejected: Codable, Sendable, Equatable {
    public var subject: String
    public var sequence: UInt64?
    public var reason: String
    /// The message as received (UTF-8 text, or base64 when it was not text), at most 64 KiB.
    public var payload: String
    public var payload_encoding: String

    public init(subject: String, sequence: UInt64?, reason: String, payload: [UInt8]) {
        self.subject = subject
        self.sequence = sequence
        self.reason = reason
        let kept = Array(payload.prefix(65_536))
        if let text = String(validating: kept, as: UTF8.self) {
            self.payload = text
            self.payload_encoding = "utf-8"
        } else {
            self.payload = Base64.encode(kept)
            self.payload_encoding = "base64"
        }
    }
}

/// A valid inbound event that no handler took (no active flow's trigger names it); the event itself stays in the
/// log at `sequence`.
public struct InboundEventUnhandled: Codable, Sendable, Equatable {
    public var event_id: String
    public var type: String
    public var source: String
    public var sequence: UInt64?
    public var reason: String

    public init(event_id: String, type: String, source: String, sequence: UInt64?, reason: String) {
        self.event_id = event_id
        self.type = type
        self.source = source
        self.sequence = sequence
        self.reason = reason
    }
}

enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out = [UInt8]()
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i]
            let b1 = i + 1 < bytes.count ? bytes[i + 1] : 0
            let b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(table[Int(b0 >> 2)])
            out.append(table[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? table[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? table[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
