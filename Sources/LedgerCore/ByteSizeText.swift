/// Sizes written as text: `512MiB`, `8GiB`, `1TiB`, `4096` (bytes): whole digits and an optional unit.
/// Binary units (KiB, MiB, GiB, TiB, and K, M, G, T) count in 1024s; decimal ones (KB, MB, GB, TB) in 1000s.
/// Units are read in any case.
public enum ByteSizeText {
    /// What is wrong with a size text, in words a person can act on.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    static let units: [(suffix: String, factor: Int)] = [
        ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
        ("kb", 1000), ("mb", 1_000_000), ("gb", 1_000_000_000), ("tb", 1_000_000_000_000),
        ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1),
    ]

    public static let form =
        "write whole digits and a unit, such as 512MiB, 8GiB or 1TiB (KiB, MiB, GiB, TiB; or bytes)"

    /// The size in bytes, between `minimum` and `maximum`, or what is wrong with `text` in words.
    public static func parse(_ text: String, minimum: Int = 1, maximum: Int = Int.max) -> Result<Int, Problem> {
        let written = text.trimmingSpaces()
        let shown = written.count > 40 ? "\"\(written.prefix(40))...\"" : "\"\(written)\""
        guard !written.isEmpty else { return .failure(Problem(message: "the size is empty; \(form)")) }
        guard written.utf8.count <= 32 else {
            return .failure(Problem(message: "\(shown) is too long to be a size; \(form)"))
        }
        if written.hasPrefix("-") {
            return .failure(Problem(message: "\(shown) is negative; a size is more than 0: \(form)"))
        }
        let lower = written.lowercased()
        let unit = units.first { lower.hasSuffix($0.suffix) }
        let digits = unit.map { String(lower.dropLast($0.suffix.count)) } ?? lower
        let number = digits.trimmingSpaces()
        guard !number.isEmpty, number.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return .failure(Problem(message: "\(shown) is not a size; \(form)"))
        }
        let factor = unit?.factor ?? 1
        guard let value = Int(number) else {
            return .failure(
                Problem(message: "\(shown) is larger than any size accepted (at most \(describe(maximum)))"))
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: factor)
        guard !overflow, bytes <= maximum else {
            return .failure(Problem(message: "\(shown) is larger than the largest size accepted, \(describe(maximum))"))
        }
        guard bytes > 0 else {
            return .failure(Problem(message: "\(shown) is no size; a size is more than 0: \(form)"))
        }
        guard bytes >= minimum else {
            return .failure(
                Problem(message: "\(shown) is smaller than the smallest size accepted, \(describe(minimum))"))
        }
        return .success(bytes)
    }

    /// `bytes` in the largest binary unit that divides it (`8GiB`, `1536KiB`, `1000 bytes`).
    public static func describe(_ bytes: Int) -> String {
        for (suffix, factor) in [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes) bytes"
    }
}
