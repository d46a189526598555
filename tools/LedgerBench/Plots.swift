import Foundation
import LedgerEngine

/// The two pictures of BENCHMARKS.md, drawn with gnuplot (Debian's `gnuplot-nox`, installed by tools/setup) from
/// data files the bench writes into its out directory: the single-run latency distribution, and seq40 beside the
/// published figures of the benchmark it copies. Without gnuplot the bench says so and draws nothing.
struct Plots {
    let report: Report
    let directory: String

    /// The published figures of the 40-sequential-task benchmark (Windmill's, one worker, a 2-vCPU AWS m4.large),
    /// in seconds.
    static let published: [(String, Double)] = [
        ("Hatchet", 1.22), ("Windmill (dedicated worker)", 2.09), ("Temporal", 2.97), ("Prefect", 4.87),
        ("Airflow", 116),
    ]

    /// gnuplot on the PATH, if any.
    static func gnuplot() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/gnuplot"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    func draw() {
        let latencies = report.samples.filter { $0.key.hasPrefix("latency.") && !$0.value.isEmpty }
        let seq40 = report.samples.filter { $0.key.hasPrefix("seq40.") && !$0.value.isEmpty }
        guard !latencies.isEmpty || !seq40.isEmpty else { return }
        guard let gnuplot = Self.gnuplot() else {
            say("\ngnuplot is missing (apt-get install gnuplot-nox, or tools/setup): no pictures drawn")
            report.remark("gnuplot was missing when this ran: no pictures were drawn")
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            if !latencies.isEmpty { try latency(latencies, gnuplot: gnuplot) }
            if !seq40.isEmpty { try comparison(seq40, gnuplot: gnuplot) }
        } catch {
            say("could not draw the pictures: \(error)")
            report.remark("the pictures could not be drawn: \(error)")
        }
    }

    /// latency.png: the distribution (CDF) of single-run latencies, one curve per scenario.
    func latency(_ series: [String: [Double]], gnuplot: String) throws {
        var plots: [String] = []
        for (index, (key, values)) in series.sorted(by: { $0.key > $1.key }).enumerated() {
            let file = "\(key).dat"
            let sorted = values.sorted()
            var text = "# latency_ms cumulative_fraction\n"
            for (i, v) in sorted.enumerated() {
                text += String(format: "%.4f %.5f\n", v, Double(i + 1) / Double(sorted.count))
            }
            try text.write(toFile: "\(directory)/\(file)", atomically: true, encoding: .utf8)
            let title = Self.title(key) + " (\(sorted.count) runs)"
            plots.append("'\(file)' using 1:2 with steps lw 2 lc \(index + 1) title '\(title)'")
        }
        let script = """
            set terminal pngcairo size 900,540 noenhanced font 'sans,11'
            set output 'latency.png'
            set title 'Single-run latency: trigger appended → read model shows SUCCEEDED (3 transform steps)'
            set xlabel 'latency (ms, log scale)'
            set ylabel 'fraction of runs at or below'
            set logscale x
            set grid
            set key right bottom
            set yrange [0:1]
            set xrange [0.5:*]
            set arrow 1 from 1.5, graph 0 to 1.5, graph 1 nohead dashtype 2 lc rgb 'gray40'
            set label 1 'target p50 ≤ 1.5 ms' at 1.5, graph 0.55 rotate by 90 offset -1,0 font ',9' tc rgb 'gray40'
            set arrow 2 from 5, graph 0 to 5, graph 1 nohead dashtype 2 lc rgb 'gray40'
            set label 2 'target p99 ≤ 5 ms' at 5, graph 0.55 rotate by 90 offset -1,0 font ',9' tc rgb 'gray40'
            plot \(plots.joined(separator: ", \\\n  "))

            """
        try run(gnuplot, script: script, name: "latency")
        report.pictures.append(
            Picture(
                title: "Single-run latency distribution (CDF), from trigger appended to read model SUCCEEDED",
                file: "latency.png"))
    }

    /// seq40.png: Ledgerflow's seq40 p50 beside the published figures, on a log scale.
    func comparison(_ series: [String: [Double]], gnuplot: String) throws {
        var rows: [(String, Double)] = []
        // The default fsync first, then sync_interval: always.
        for (key, values) in series.sorted(by: { $0.key > $1.key }) {
            let sorted = values.sorted()
            rows.append(
                (
                    key == "seq40.always" ? "Ledgerflow p50, fsync always" : "Ledgerflow p50",
                    sorted[sorted.count / 2] / 1000
                ))
        }
        rows += Self.published
        var text = "# name seconds\n"
        for (i, (name, seconds)) in rows.enumerated() {
            text += "\(i) \"\(name)\" \(seconds)\n"
        }
        try text.write(toFile: "\(directory)/seq40.dat", atomically: true, encoding: .utf8)
        let script = """
            set terminal pngcairo size 1000,600 noenhanced font 'sans,11'
            set output 'seq40.png'
            set title "40 sequential lightweight steps, one run at a time: time for the whole run"
            set ylabel 'seconds (log scale)'
            set logscale y
            set yrange [0.001:1000]
            set grid ytics
            set style fill solid 0.8 border -1
            set boxwidth 0.6
            set xtics rotate by -20 left noenhanced
            set bmargin 6
            unset key
            set arrow 1 from graph 0, first 0.01 to graph 1, first 0.01 nohead front dashtype 2 lc rgb 'gray30'
            set label 1 "Ledgerflow: this machine, now (dashed: its target p50 ≤ 10 ms). Others: published figures (2-vCPU AWS m4.large, one worker)" at graph 0.01, graph 0.96 font ',9'
            plot 'seq40.dat' using 1:3:($1 < \(series.count) ? 2 : 3):xtic(2) with boxes lc variable, \\
              '' using 1:3:(sprintf(\"%.3g s\", $3)) with labels offset 0,0.8 font ',9'

            """
        try run(gnuplot, script: script, name: "seq40")
        report.pictures.append(
            Picture(
                title: "seq40: 40 sequential steps, Ledgerflow's p50 beside the published figures of that benchmark",
                file: "seq40.png"))
    }

    static func title(_ key: String) -> String {
        switch key {
        case "latency.default", "seq40.default": return "default fsync (every 2 minutes)"
        case "latency.always", "seq40.always": return "sync_interval: always"
        default: return key
        }
    }

    func run(_ gnuplot: String, script: String, name: String) throws {
        let path = "\(directory)/\(name).gp"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: gnuplot)
        process.arguments = ["\(name).gp"]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw RuntimeError("gnuplot \(name).gp failed: \(output.prefix(500))")
        }
        say("drew \(directory)/\(name).png")
    }
}
