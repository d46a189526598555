/// HMAC-SHA256 (RFC 2104) over `SHA256`: what a webhook's `Ledgerflow-Signature` is made of.
public enum HMACSHA256 {
    static let blockSize = 64

    /// The 32-byte authentication code of `message` under `key`.
    public static func authenticationCode(key: some Collection<UInt8>, message: some Collection<UInt8>) -> [UInt8] {
        var block = key.count > blockSize ? SHA256.hash(key) : Array(key)
        block += [UInt8](repeating: 0, count: blockSize - block.count)
        var inner = block.map { $0 ^ 0x36 }
        inner.append(contentsOf: message)
        var outer = block.map { $0 ^ 0x5c }
        outer += SHA256.hash(inner)
        return SHA256.hash(outer)
    }
}

/// `Ledgerflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>`: how a webhook's
/// receiver knows the body came from Ledgerflow, unchanged, and when it was signed.
public enum WebhookSignature {
    public static let header = "Ledgerflow-Signature"

    /// The header's value for `body` signed at `timestamp` (Unix seconds) with `secret`.
    public static func value(secret: String, timestamp: Int64, body: some Collection<UInt8>) -> String {
        "t=\(timestamp),v1=\(SHA256.hexDigits(code(secret: secret, timestamp: timestamp, body: body)))"
    }

    static func code(secret: String, timestamp: Int64, body: some Collection<UInt8>) -> [UInt8] {
        var message = Array("\(timestamp).".utf8)
        message.append(contentsOf: body)
        return HMACSHA256.authenticationCode(key: Array(secret.utf8), message: message)
    }

    /// What a receiver checks: the header is well formed, signed within `tolerance` seconds of `now`, and its `v1`
    /// is the code of `body` under `secret` (compared in constant time).
    public static func verify(
        _ header: String, secret: String, body: some Collection<UInt8>, now: Int64, tolerance: Int64 = 300
    ) -> Bool {
        var timestamp: Int64?
        var signatures: [String] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { return false }
            switch pair[0].trimmingWhitespace() {
            case "t": timestamp = Int64(pair[1])
            case "v1": signatures.append(String(pair[1]))
            default: continue
            }
        }
        guard let timestamp, abs(now - timestamp) <= tolerance else { return false }
        let expected = SHA256.hexDigits(code(secret: secret, timestamp: timestamp, body: body))
        return signatures.contains { equalInConstantTime(Array($0.utf8), Array(expected.utf8)) }
    }

    static func equalInConstantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}
