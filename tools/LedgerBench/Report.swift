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
    /// A stable name for the figure (`e2e.throughput`), under which `tools/bench-limits.json` says what limits it.
    var key: String?
    /// What limits a figure that misses its target (from a profile), printed beside the miss.
    var limit: String?

    var ratio: Double? { ceiling.map { $0 > 0 ? value / $0 : 0 } }
}

/// A picture the bench drew, linked from BENCHMARKS.md.
struct Picture: Codable {
    var title: String
    var file: String
}

final class Report: @unchecked Sendable {
    let quick: Bool
    var figures: [Figure] = []
    var pictures: [Picture] = []
    /// Extra paragraphs for BENCHMARKS.md (definitions, how a scenario was filled, why a picture is missing).
    var remarks: [String] = []
    /// What limits each missed target, by figure key (`--limits`, normally tools/bench-limits.json).
    var limits: [String: String] = [:]
    /// Raw samples for the pictures (`latency.default`: single-run latencies in ms, ...), not written to bench.json.
    var samples: [String: [Double]] = [:]
    let started = Date()

    init(quick: Bool) { self.quick = quick }

    /// Reads `{"<figure key>": "what limits it", ...}`; a missing file is no error.
    /// tools/bench-limits.json in the nearest directory above the executable that has one (the checkout it was built
    /// in: .build/<configuration>/ledgerflow-bench), else in the working directory; nil when neither has it.
    static func defaultLimitsFile() -> String? {
        let name = "tools/bench-limits.json"
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return FileManager.default.fileExists(atPath: name) ? name : nil
    }

    /// Reads what limits each missed target. A file that is missing or not a JSON object of strings ends the
    /// program (exit 2) before any work: a report whose misses silently say "not profiled" is worse than none.
    func loadLimits(from path: String) {
        guard let data = FileManager.default.contents(atPath: path) else {
            FileHandle.standardError.write(
                Data("ledgerflow-bench: cannot read the limits file \(path); give an existing one with --limits\n".utf8)
            )
            exit(2)
        }
        do {
            limits = try JSONDecoder().decode([String: String].self, from: data)
        } catch {
            FileHandle.standardError.write(
                Data(
                    "ledgerflow-bench: \(path) is not a JSON object of strings (\(error)); fix it or pass another with --limits\n"
                        .utf8))
            exit(2)
        }
    }

    func add(_ figure: Figure) {
        var figure = figure
        if figure.limit == nil, let key = figure.key { figure.limit = limits[key] }
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

    func remark(_ text: String) {
        remarks.append(text)
        say("  (\(text))")
    }

    static func format(_ value: Double) -> String {
        if value >= 1000 { return String(Int(value.rounded())) }
        if value >= 10 { return String(format: "%.1f", value) }
        return String(format: "%.2f", value)
    }

    /// Writes bench.json and BENCHMARKS.md into `directory`; pictures are linked under `picturesLink` (the place
    /// tools/bench copies them to, relative to the repository's root where BENCHMARKS.md ends up).
    func write(to directory: String, picturesLink: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        struct Document: Encodable {
            var date: String
            var quick: Bool
            var machine: String
            var figures: [Figure]
            var pictures: [Picture]
            var remarks: [String]
        }
        let machine =
            "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"
        let iso = ISO8601DateFormatter().string(from: started)
        try encoder.encode(
            Document(date: iso, quick: quick, machine: machine, figures: figures, pictures: pictures, remarks: remarks)
        )
        .write(to: URL(fileURLWithPath: "\(directory)/bench.json"))
        try markdown(date: iso, machine: machine, picturesLink: picturesLink)
            .write(toFile: "\(directory)/BENCHMARKS.md", atomically: true, encoding: .utf8)
    }

    func markdown(date: String, machine: String, picturesLink: String) -> String {
        var md = "# Benchmarks\n\n"
        md +=
            "Measured \(date) on \(machine)\(quick ? " (--quick: small N, for CI only; not meaningful figures)" : ""), by `tools/bench`.\n"
        md += "Every figure is reported with its raw ceiling measured in the same run, and the ratio.\n\n"
        md += "| scenario | metric | value | ceiling | ratio | target | met |\n|---|---|---|---|---|---|---|\n"
        for f in figures {
            let ceiling = f.ceiling.map { "\(Self.format($0)) \(f.unit) (\(f.ceilingName ?? ""))" } ?? "—"
            let ratio = f.ratio.map { String(format: "%.2f", $0) } ?? "—"
            let met = f.met.map { $0 ? "yes" : "**no**" } ?? "—"
            md +=
                "| \(f.scenario) | \(f.metric) | \(Self.format(f.value)) \(f.unit) | \(ceiling) | \(ratio) | \(f.target ?? "—") | \(met) |\n"
        }
        let misses = figures.filter { $0.met == false }
        if !misses.isEmpty {
            md += "\n## What limits the targets not met\n\n"
            for f in misses {
                let limit =
                    f.limit
                    ?? "not profiled yet (add what limits it under `\(f.key ?? "?")` in tools/bench-limits.json)"
                md += "- \(f.scenario), \(f.metric): \(limit)\n"
            }
        }
        let notes = figures.compactMap { f in f.note.map { "- \(f.scenario), \(f.metric): \($0)" } }
        if !notes.isEmpty { md += "\n## Notes\n\n" + notes.joined(separator: "\n") + "\n" }
        if !remarks.isEmpty {
            md += "\n## Definitions, and how the scenarios were filled\n\n"
            md += remarks.map { "- \($0)" }.joined(separator: "\n") + "\n"
        }
        if !pictures.isEmpty {
            md += "\n## Pictures\n\n"
            for p in pictures { md += "![\(p.title)](\(picturesLink)/\(p.file))\n\n" }
        }
        return md
    }
}
