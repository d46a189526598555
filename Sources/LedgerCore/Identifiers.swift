import CSHA256
public import Foundation

/// Event ids: random UUIDs.
public enum EventID {
    /// A random (version 4) UUID, lowercase. Its 122 random bits come from the system's generator (`getrandom`):
    /// Foundation's `UUID()` opened and read /dev/urandom for each one, and every event appended takes an id.
    public static func make() -> String {
        var random = SystemRandomNumberGenerator()
        var bytes: (UInt64, UInt64) = (random.next(), random.next())
        return withUnsafeBytes(of: &bytes) { UUIDText.format($0, version: 4) }
    }
}

/// UUIDs as text.
enum UUIDText {
    /// The first 16 of `bytes` as 8-4-4-4-12 lowercase hex digits, with `version` and the RFC 9562 variant set,
    /// written in one allocation.
    static func format(_ bytes: UnsafeRawBufferPointer, version: UInt8) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 36) { out in
            let table = digits.utf8Start
            var at = 0
            for index in 0..<16 {
                var byte = bytes[index]
                if index == 6 { byte = (byte & 0x0f) | (version << 4) }
                if index == 8 { byte = (byte & 0x3f) | 0x80 }
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    out[at] = UInt8(ascii: "-")
                    at += 1
                }
                out[at] = table[Int(byte >> 4)]
                out[at + 1] = table[Int(byte & 0x0f)]
                at += 2
            }
            return at
        }
    }
}

/// RFC 3339 timestamps in UTC with milliseconds, as events carry them.
public enum Timestamp {
    public static func now() -> String { format(Date()) }

    /// The earliest and latest instants written: 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
    static let millisRange: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// `date` as RFC 3339 text; dates outside years 1...9999 are clamped to them, NaN counts as the epoch.
    public static func format(_ date: Date) -> String {
        let ms = (date.timeIntervalSince1970 * 1000).rounded(.down)
        let clamped: Int64
        if ms.isNaN {
            clamped = 0
        } else if ms <= Double(millisRange.lowerBound) {
            clamped = millisRange.lowerBound
        } else if ms >= Double(millisRange.upperBound) {
            clamped = millisRange.upperBound
        } else {
            clamped = Int64(ms)
        }
        return format(millis: clamped)
    }

    /// Milliseconds since the epoch as RFC 3339 text, clamped to years 1...9999.
    public static func format(millis: Int64) -> String {
        let millis = min(max(millis, millisRange.lowerBound), millisRange.upperBound)
        // Floor division, so instants before 1970 come out right.
        let totalSeconds = millis >= 0 ? millis / 1000 : (millis - 999) / 1000
        let milli = Int(millis - totalSeconds * 1000)
        let days = Int(totalSeconds >= 0 ? totalSeconds / 86400 : (totalSeconds - 86399) / 86400)
        let seconds = Int(totalSeconds - Int64(days) * 86400)
        let (y, m, d) = civil(fromDays: days)
        // Written digit by digit (every event and decision stamps one): `yyyy-MM-ddTHH:mm:ss.SSSZ`, 24 bytes.
        return String(unsafeUninitializedCapacity: 24) { out in
            func put(_ value: Int, _ width: Int, at end: Int) {
                var v = value
                for i in stride(from: end - 1, through: end - width, by: -1) {
                    out[i] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
            }
            put(y, 4, at: 4)
            out[4] = UInt8(ascii: "-")
            put(m, 2, at: 7)
            out[7] = UInt8(ascii: "-")
            put(d, 2, at: 10)
            out[10] = UInt8(ascii: "T")
            put(seconds / 3600, 2, at: 13)
            out[13] = UInt8(ascii: ":")
            put(seconds % 3600 / 60, 2, at: 16)
            out[16] = UInt8(ascii: ":")
            put(seconds % 60, 2, at: 19)
            out[19] = UInt8(ascii: ".")
            put(milli, 3, at: 23)
            out[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    /// Parses an RFC 3339 timestamp (`2026-11-20T05:45:45.123Z`, with or without fraction, `Z` or an offset
    /// such as `+01:00`). Nil for anything else, including fields out of range (month 13, hour 24, year 0000).
    public static func parse(_ text: String) -> Date? {
        let chars = Array(text.utf8)
        guard chars.count >= 20, chars.count <= 64 else { return nil }
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from >= 0, from + len <= chars.count else { return nil }
            var v = 0
            for c in chars[from..<from + len] {
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        func separator(_ at: Int, _ allowed: String) -> Bool { at < chars.count && allowed.utf8.contains(chars[at]) }
        guard let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2),
            let s = num(17, 2), separator(4, "-"), separator(7, "-"), separator(10, "Tt "), separator(13, ":"),
            separator(16, ":")
        else { return nil }
        guard (1...9999).contains(y), (1...12).contains(mo), (1...daysIn(month: mo, year: y)).contains(d),
            (0...23).contains(h),
            (0...59).contains(mi), (0...60).contains(s)
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < chars.count, chars[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let digitsStart = index
            while index < chars.count, chars[index] >= 48, chars[index] <= 57 {
                fraction += Double(chars[index] - 48) * scale
                scale /= 10
                index += 1
            }
            guard index > digitsStart else { return nil }
        }
        var offset = 0
        guard index < chars.count else { return nil }
        if chars[index] == UInt8(ascii: "Z") || chars[index] == UInt8(ascii: "z") {
            index += 1
        } else if chars[index] == UInt8(ascii: "+") || chars[index] == UInt8(ascii: "-") {
            guard let oh = num(index + 1, 2), separator(index + 3, ":"), let om = num(index + 4, 2), oh <= 23, om <= 59
            else { return nil }
            offset = (oh * 3600 + om * 60) * (chars[index] == UInt8(ascii: "+") ? 1 : -1)
            index += 6
        } else {
            return nil
        }
        guard index == chars.count else { return nil }
        let days = daysFromCivil(y, mo, d)
        let total = Double(days * 86400 + h * 3600 + mi * 60 + s - offset) + fraction
        return Date(timeIntervalSince1970: total)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func civil(fromDays z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// SHA-256 (FIPS 180-4), for definition hashes, ids derived from names and the log's hash chain (`EventChain`):
/// the message is read in place (no copy); its blocks go through the CPU's SHA extensions when it has them
/// (`CSHA256`, about six times faster), else through the rounds below.
public enum SHA256 {
    static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    /// Whether this CPU has the SHA extensions (checked once).
    public static let accelerated = csha256_accelerated() != 0

    /// The 32-byte digest of `message`.
    public static func hash(_ message: some Collection<UInt8>) -> [UInt8] {
        if let digest = message.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0)) }) {
            return digest
        }
        return Array(message).withUnsafeBytes { hash($0) }
    }

    /// The 32-byte digest of the bytes in `message`.
    public static func hash(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        hash(message, accelerated: accelerated)
    }

    /// The digest, with the CPU's SHA extensions or without (the tests check both).
    static func hash(_ message: UnsafeRawBufferPointer, accelerated: Bool) -> [UInt8] {
        var state = State()
        let whole = message.count / 64
        if whole > 0, let base = message.baseAddress {
            state.compress(base, blocks: whole, accelerated: accelerated)
        }
        // The tail, the 0x80 marker and the bit length: one or two more blocks.
        let rest = message.count - whole * 64
        let bitLength = UInt64(message.count) &* 8
        withUnsafeTemporaryAllocation(byteCount: 128, alignment: 16) { tail in
            tail.initializeMemory(as: UInt8.self, repeating: 0)
            if rest > 0, let base = message.baseAddress {
                tail.baseAddress!.copyMemory(from: base + whole * 64, byteCount: rest)
            }
            tail[rest] = 0x80
            let blocks = rest < 56 ? 1 : 2
            tail.storeBytes(of: bitLength.bigEndian, toByteOffset: blocks * 64 - 8, as: UInt64.self)
            state.compress(UnsafeRawPointer(tail.baseAddress!), blocks: blocks, accelerated: accelerated)
        }
        return state.digest
    }

    public static func hex(_ text: String) -> String {
        hexDigits(hash(Array(text.utf8)))
    }

    /// Lowercase hex of `bytes`, after `prefix` (one allocation).
    public static func hexDigits(_ bytes: [UInt8], prefix: StaticString = "") -> String {
        let digits: StaticString = "0123456789abcdef"
        let start = prefix.utf8CodeUnitCount
        return String(unsafeUninitializedCapacity: start + bytes.count * 2) { out in
            let table = digits.utf8Start
            let head = prefix.utf8Start
            for i in 0..<start { out[i] = head[i] }
            for (i, b) in bytes.enumerated() {
                out[start + 2 * i] = table[Int(b >> 4)]
                out[start + 2 * i + 1] = table[Int(b & 0x0f)]
            }
            return start + bytes.count * 2
        }
    }

    struct State {
        /// h0...h7, contiguous (the C compression takes them as `uint32_t[8]`).
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
            0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
        )

        var digest: [UInt8] {
            [UInt8](unsafeUninitializedCapacity: 32) { out, count in
                let words = [h.0, h.1, h.2, h.3, h.4, h.5, h.6, h.7]
                for (i, v) in words.enumerated() {
                    UnsafeMutableRawBufferPointer(out).storeBytes(
                        of: v.bigEndian, toByteOffset: i * 4, as: UInt32.self)
                }
                count = 32
            }
        }

        /// `blocks` 64-byte blocks from `data`.
        mutating func compress(_ data: UnsafeRawPointer, blocks: Int, accelerated: Bool) {
            if accelerated {
                withUnsafeMutablePointer(to: &h) { words in
                    words.withMemoryRebound(to: UInt32.self, capacity: 8) { words in
                        csha256_compress(words, data.assumingMemoryBound(to: UInt8.self), blocks)
                    }
                }
                return
            }
            SHA256.k.withUnsafeBufferPointer { k in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                    for block in 0..<blocks {
                        let p = data + block * 64
                        for i in 0..<16 {
                            w[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
                        }
                        for i in 16..<64 {
                            let x = w[i - 15]
                            let y = w[i - 2]
                            let s0 = x.rotr(7) ^ x.rotr(18) ^ (x >> 3)
                            let s1 = y.rotr(17) ^ y.rotr(19) ^ (y >> 10)
                            w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
                        }
                        var (a, b, c, d, e, f, g, hh) = h
                        for i in 0..<64 {
                            let s1 = e.rotr(6) ^ e.rotr(11) ^ e.rotr(25)
                            let ch = (e & f) ^ (~e & g)
                            let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                            let s0 = a.rotr(2) ^ a.rotr(13) ^ a.rotr(22)
                            let maj = (a & b) ^ (a & c) ^ (b & c)
                            hh = g
                            g = f
                            f = e
                            e = d &+ t1
                            d = c
                            c = b
                            b = a
                            a = t1 &+ s0 &+ maj
                        }
                        h = (
                            h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e, h.5 &+ f, h.6 &+ g, h.7 &+ hh
                        )
                    }
                }
            }
        }
    }
}

extension UInt32 {
    @inline(__always) fileprivate func rotr(_ n: UInt32) -> UInt32 { (self >> n) | (self << (32 - n)) }
}

/// Ids derived from names, so that the same signal always names the same run.
public enum DerivedID {
    /// A UUID-shaped id (version 8, name-based on SHA-256) for `name`.
    public static func uuid(_ name: String) -> String {
        let digest = SHA256.hash(Array(name.utf8))
        // Every run a signal starts has its id derived, and every rebuild checks it.
        return digest.withUnsafeBytes { UUIDText.format($0, version: 8) }
    }
}
