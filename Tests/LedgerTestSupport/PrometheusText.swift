/// A page of Prometheus text exposition (`GET /metrics`), read the way a scraper would: one sample per line,
/// `name{labels} value`, comments skipped.
public struct PrometheusText: Sendable {
    /// Each sample's series (`name` or `name{label="value",…}`, as written) and its value.
    public let samples: [(series: String, value: Double)]
    public let text: String

    public init(_ text: String) {
        self.text = text
        samples = text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "),
                let value = Double(line[line.index(after: space)...])
            else { return nil }
            return (String(line[..<space]), value)
        }
    }

    /// The value of the series written exactly as `series` (labels in the page's order); nil when absent.
    public func value(_ series: String) -> Double? {
        samples.first { $0.series == series }?.value
    }

    /// The series of the metric family `name` (its samples, and for a histogram its `_bucket`, `_sum` and `_count`).
    public func series(of name: String) -> [String] {
        samples.map(\.series).filter {
            $0 == name || $0.hasPrefix("\(name){") || $0.hasPrefix("\(name)_bucket{") || $0.hasPrefix("\(name)_sum")
                || $0.hasPrefix("\(name)_count")
        }
    }

    /// The type declared for `name` (`counter`, `gauge`, `histogram`); nil when the page has no `# TYPE` for it.
    public func type(of name: String) -> String? {
        let prefix = "# TYPE \(name) "
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }
}
