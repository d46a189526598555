import CNATS
import Foundation
public import LedgerCore

/// How a connection authenticates and whether it uses TLS (LedgerCore's `NATSConnectOptions`, the command line's
/// value): applied to cnats' options at connect (see `NATSConnection.connect`). `.none` adds nothing (credentials in
/// the URL still work).
public typealias NATSCredentials = NATSConnectOptions

extension NATSConnectOptions {
    /// Sets these on cnats' options; the error says which setting failed (never its secret).
    func apply(to opts: OpaquePointer) throws {
        var s = NATS_OK
        if user != nil || password != nil {
            s = natsOptions_SetUserInfo(opts, user, password)
            guard s == NATS_OK else { throw natsLastError(s, "setting the NATS user") }
        }
        if let token {
            s = natsOptions_SetToken(opts, token)
            guard s == NATS_OK else { throw natsLastError(s, "setting the NATS token") }
        }
        if let credentialsFile {
            s = natsOptions_SetUserCredentialsFromFiles(opts, credentialsFile, nkeySeedFile)
            guard s == NATS_OK else { throw natsLastError(s, "reading the NATS credentials file \(credentialsFile)") }
        } else if let nkeySeedFile {
            let publicKey = try NKeys.publicKey(ofSeedFile: nkeySeedFile)
            s = natsOptions_SetNKeyFromSeed(opts, publicKey, nkeySeedFile)
            guard s == NATS_OK else { throw natsLastError(s, "setting the NATS nkey from \(nkeySeedFile)") }
        }
        if usesTLS {
            s = natsOptions_SetSecure(opts, true)
            guard s == NATS_OK else { throw natsLastError(s, "turning on TLS") }
        }
        if let tlsCAFile {
            s = natsOptions_LoadCATrustedCertificates(opts, tlsCAFile)
            guard s == NATS_OK else { throw natsLastError(s, "loading the TLS CA certificates \(tlsCAFile)") }
        }
        if tlsCertificateFile != nil || tlsKeyFile != nil {
            guard let tlsCertificateFile, let tlsKeyFile else {
                throw NATSError(message: "a TLS client certificate needs both its certificate file and its key file")
            }
            s = natsOptions_LoadCertificatesChain(opts, tlsCertificateFile, tlsKeyFile)
            guard s == NATS_OK else {
                throw natsLastError(s, "loading the TLS client certificate \(tlsCertificateFile) and key \(tlsKeyFile)")
            }
        }
    }
}

/// NATS nkeys: ed25519 keys written as base32 of a prefix byte, the key and a CRC-16 (XMODEM), without padding.
public enum NKeys {
    /// The prefix byte of a seed (`S`) and of a user's public key (`U`).
    static let seedPrefix: UInt8 = 18 << 3
    public static let userPrefix: UInt8 = 20 << 3

    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The 32 raw seed bytes and the key's type prefix of an encoded seed (`SU...` for a user).
    public static func decodeSeed(_ text: String) throws -> (prefix: UInt8, seed: [UInt8]) {
        guard let raw = base32Decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), raw.count == 36 else {
            throw Invalid(description: "not an nkey seed (58 base32 characters starting with S)")
        }
        let body = Array(raw[0..<34])
        guard crc16(body) == UInt16(raw[34]) | UInt16(raw[35]) << 8 else {
            throw Invalid(description: "the nkey seed's checksum is wrong (a damaged or mistyped seed)")
        }
        guard raw[0] & 0xF8 == seedPrefix else {
            throw Invalid(description: "not an nkey seed (a seed starts with S; a public key cannot sign)")
        }
        let prefix = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xF8) >> 3)
        return (prefix, Array(raw[2..<34]))
    }

    /// Encodes 32 raw seed bytes as a seed of the given key type (`SU...` for a user).
    public static func encodeSeed(_ seed: [UInt8], prefix: UInt8 = userPrefix) -> String {
        var raw: [UInt8] = [seedPrefix | (prefix >> 5), (prefix & 0x1F) << 3] + seed
        let crc = crc16(raw)
        raw += [UInt8(crc & 0xFF), UInt8(crc >> 8)]
        return base32Encode(raw)
    }

    /// Encodes a 32-byte ed25519 public key (`U...` for a user).
    public static func encodePublicKey(_ key: [UInt8], prefix: UInt8 = userPrefix) -> String {
        var raw = [prefix] + key
        let crc = crc16(raw)
        raw += [UInt8(crc & 0xFF), UInt8(crc >> 8)]
        return base32Encode(raw)
    }

    /// The public key of the seed written in `path` (the file may hold other lines, as a `.creds` file does: the
    /// first line that is a seed counts).
    public static func publicKey(ofSeedFile path: String) throws -> String {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw NATSError(message: "cannot read the nkey seed file \(path): \(error.localizedDescription)")
        }
        guard
            let line = text.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.hasPrefix("S") && $0.count == 58 })
        else { throw NATSError(message: "\(path) holds no nkey seed (a line of 58 characters starting with SU)") }
        do {
            let (prefix, seed) = try decodeSeed(line)
            return try encodePublicKey(Ed25519.publicKey(ofSeed: seed), prefix: prefix)
        } catch let error as Invalid {
            throw NATSError(message: "\(path): \(error.description)")
        }
    }

    static func crc16(_ bytes: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }

    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    static func base32Encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var buffer = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | Int(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func base32Decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = 0
        var bits = 0
        for char in text.utf8 {
            guard let value = alphabet.firstIndex(of: char) else { return nil }
            buffer = ((buffer << 5) | value) & 0xFFFF
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> (bits - 8)) & 0xFF))
                bits -= 8
            }
        }
        return out
    }
}

/// The ed25519 public key of a seed, computed by the OpenSSL that cnats is linked with (cnats signs with the seed
/// but needs the public key given). Looked up at run time, so nothing more is linked.
enum Ed25519 {
    private typealias NewRawPrivateKey =
        @convention(c) (Int32, OpaquePointer?, UnsafePointer<UInt8>?, Int) -> OpaquePointer?
    private typealias GetRawPublicKey =
        @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<Int>?) ->
        Int32
    private typealias FreeKey = @convention(c) (OpaquePointer?) -> Void
    /// OpenSSL's NID_ED25519.
    private static let nid: Int32 = 1087

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer? {
        if let found = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) { return found }
        for library in ["libcrypto.so.3", "libcrypto.so"] {
            if let handle = dlopen(library, RTLD_NOW), let found = dlsym(handle, name) { return found }
        }
        return nil
    }

    static func publicKey(ofSeed seed: [UInt8]) throws -> [UInt8] {
        guard let newKey = symbol("EVP_PKEY_new_raw_private_key"),
            let getPublic = symbol("EVP_PKEY_get_raw_public_key"),
            let free = symbol("EVP_PKEY_free")
        else {
            throw NATSError(
                message:
                    "deriving the nkey's public key needs OpenSSL 1.1.1 or newer (libcrypto), which was not found; use a .creds file instead"
            )
        }
        let create = unsafeBitCast(newKey, to: NewRawPrivateKey.self)
        let read = unsafeBitCast(getPublic, to: GetRawPublicKey.self)
        let release = unsafeBitCast(free, to: FreeKey.self)
        guard let key = seed.withUnsafeBufferPointer({ create(nid, nil, $0.baseAddress, $0.count) }) else {
            throw NATSError(message: "OpenSSL refused the nkey seed as an ed25519 key")
        }
        defer { release(key) }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        let ok = out.withUnsafeMutableBufferPointer { read(key, $0.baseAddress, &length) }
        guard ok == 1, length == 32 else { throw NATSError(message: "OpenSSL could not derive the nkey's public key") }
        return out
    }
}
