import Foundation

/// Structural checks of five-field cron expressions (minute hour day-of-month month day-of-week).
public enum CronCheck {
    static let fields: [(name: String, range: ClosedRange<Int>, names: [String: Int])] = [
        ("minute", 0...59, [:]),
        ("hour", 0...23, [:]),
        ("day of month", 1...31, [:]),
        (
            "month", 1...12,
            [
                "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10,
                "NOV": 11, "DEC": 12,
            ]
        ),
        ("day of week", 0...7, ["SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6]),
    ]
    /// The longest cron expression read.
    static let maxBytes = 256

    /// Nil when `cron` is well formed, else what is wrong with it (naming the field). Never traps.
    public static func problem(_ cron: String) -> String? {
        guard cron.utf8.count <= maxBytes else {
            return "the cron expression is \(cron.utf8.count) bytes long; at most \(maxBytes) are accepted"
        }
        let parts = cron.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 5 else {
            return "\"\(cron)\": a cron expression has 5 fields (minute hour day month weekday)"
        }
        for (part, field) in zip(parts, fields) {
            if let problem = fieldProblem(part, range: field.range, names: field.names) {
                return "\"\(part)\" in the \(field.name) field: \(problem)"
            }
        }
        return nil
    }

    static func fieldProblem(_ field: Substring, range: ClosedRange<Int>, names: [String: Int]) -> String? {
        let allowed = "\(range.lowerBound)-\(range.upperBound)"
        for item in field.split(separator: ",", omittingEmptySubsequences: false) {
            if item.isEmpty { return "an empty item in the list (two commas, or a comma at an end)" }
            let halves = item.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let body = halves[0]
            if halves.count == 2 {
                let step = halves[1]
                guard let n = number(step), n >= 1, n <= range.count else {
                    return "the step after \"/\" must be a whole number from 1 to \(range.count), not \"\(step)\""
                }
            }
            if body.isEmpty { return "a value or \"*\" is missing before \"/\"" }
            if body == "*" { continue }
            let bounds = body.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2 else { return "\"\(body)\" is neither a value nor a range such as 1-5" }
            var values: [Int] = []
            for bound in bounds {
                if bound.isEmpty { return "the range \"\(body)\" needs a value on both sides of \"-\"" }
                guard let value = number(bound) ?? names[bound.uppercased()], range.contains(value) else {
                    let named = names.isEmpty ? "" : " or a name such as \(names.min { $0.value < $1.value }!.key)"
                    return "\"\(bound)\" is not a valid value (\(allowed)\(named))"
                }
                values.append(value)
            }
            if values.count == 2, values[0] > values[1] {
                return "the range \"\(body)\" runs backwards; write the smaller value first"
            }
        }
        return nil
    }

    /// A small decimal number (ASCII digits only), else nil.
    static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 4, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return nil
        }
        return Int(text)
    }
}
