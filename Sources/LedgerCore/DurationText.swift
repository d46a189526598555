import Foundation

/// Durations written as text: `500ms`, `30s`, `15m`, `1h`, `1d`: digits, optionally a fraction, and a unit.
public enum DurationText {
    /// What is wrong with a duration text, in words a person can act on.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    static let units: [(suffix: String, factor: Double)] = [
        ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400),
    ]

    /// The duration in seconds: more than 0 and at most `Limits.runTimeoutSeconds`; nil for anything else.
    public static func seconds(_ text: String) -> Double? {
        try? parse(text).get()
    }

    /// The duration in seconds, or what is wrong with `text` in words.
    public static func parse(_ text: String) -> Result<Double, Problem> {
        let shown = text.count > 40 ? "\"\(text.prefix(40))...\"" : "\"\(text)\""
        let form = "write digits and a unit (ms, s, m, h or d), such as 500ms, 30s, 1.5h or 1d"
        guard text.utf8.count <= 32 else {
            return .failure(Problem(message: "\(shown) is too long to be a duration; \(form)"))
        }
        guard let unit = units.first(where: { text.hasSuffix($0.suffix) }) else {
            return .failure(Problem(message: "\(shown) has no unit; \(form)"))
        }
        let number = Array(text.utf8.dropLast(unit.suffix.utf8.count))
        var digitsBefore = 0
        var digitsAfter = 0
        var sawPoint = false
        for c in number {
            if c >= 0x30, c <= 0x39 {
                if sawPoint { digitsAfter += 1 } else { digitsBefore += 1 }
            } else if c == UInt8(ascii: "."), !sawPoint {
                sawPoint = true
            } else {
                return .failure(Problem(message: "\(shown) is not a duration; \(form)"))
            }
        }
        guard digitsBefore > 0, !sawPoint || digitsAfter > 0,
            let value = Double(String(decoding: number, as: UTF8.self)), value.isFinite
        else {
            return .failure(Problem(message: "\(shown) is not a duration; \(form)"))
        }
        let seconds = value * unit.factor
        guard seconds > 0 else { return .failure(Problem(message: "\(shown): a duration must be longer than 0")) }
        guard seconds <= Limits.runTimeoutSeconds else {
            return .failure(
                Problem(
                    message:
                        "\(shown) is longer than the longest duration accepted, 30 days (\(Int(Limits.runTimeoutSeconds))s)"
                ))
        }
        return .success(seconds)
    }
}
