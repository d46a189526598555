import Foundation

/// One measured figure with the ceiling measured in the same run.
struct Figure: Codable {
    var scenario: String
    var metric: String
    var value: Double
    var unit: String
    var ceiling: Double?
    var ceilingName: String?
    var target: String?
    var met: Bool?
    var note: String?

    var ratio: Double? { ceiling.map { $0 > 0 ? value / $0 : 0 } }
}

final class Report: @unchecked Sendable {
    let quick: Bool
    var figures: [Figure] = []
    let started = Date()

    init(quick: Bool) { self.quick = quick }

    func add(_ figure: Figure) {
        figures.append(figure)
        var line = "  \(figure.metric): \(Self.format(figure.value)) \(figure.unit)"
        if let ceiling = figure.ceiling, let ratio = figure.ratio {
            line +=
                "  (ceiling \(figure.ceilingName ?? ""): \(Self.format(ceiling)) \(figure.unit), ratio \(String(format: "%.2f", ratio)))"
        }
        if let met = figure.met {
            line += met ? "  target \(figure.target ?? "") met" : "  target \(figure.target ?? "") NOT met"
        }
        print(line)
        fflush(nil)
    }

    static func format(_ value: Double) -> String {
        if value >= 1000 { return String(Int(value.rounded())) }
        if value >= 10 { return String(format: "%.1f", value) }
        return String(format: "%.2f", value)
    }

    func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        struct Document: Encodable {
            var date: String
            var quick: Bool
            var machine: String
            var figures: [Figure]
        }
        let machine =
            "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
        let iso = ISO8601DateFormatter().string(from: started)
        try encoder.encode(Document(date: iso, quick: quick, machine: machine, figures: figures))
            .write(to: URL(fileURLWithPath: "\(directory)/bench.json"))
        var md = "# Benchmarks\n\n"
        md +=
            "Measured \(iso) on \(machine)\(quick ? " (--quick: small N, for CI only; not meaningful figures)" : ""), by `tools/bench`.\n"
        md += "Every figure is reported with its raw ceiling measured in the same run, and the ratio.\n\n"
        md += "| scenario | metric | value | ceiling | ratio | target | met |\n|---|---|---|---|---|---|---|\n"
        for f in figures {
            let ceiling = f.ceiling.map { "\(Self.format($0)) \(f.unit) (\(f.ceilingName ?? ""))" } ?? "—"
            let ratio = f.ratio.map { String(format: "%.2f", $0) } ?? "—"
            let met = f.met.map { $0 ? "yes" : "**no**" } ?? "—"
            md +=
                "| \(f.scenario) | \(f.metric) | \(Self.format(f.value)) \(f.unit) | \(ceiling) | \(ratio) | \(f.target ?? "—") | \(met) |\n"
        }
        let notes = figures.compactMap { f in f.note.map { "- \(f.scenario), \(f.metric): \($0)" } }
        if !notes.isEmpty { md += "\n## Notes\n\n" + notes.joined(separator: "\n") + "\n" }
        try md.write(toFile: "\(directory)/BENCHMARKS.md", atomically: true, encoding: .utf8)
    }
}
