// ledgerflow-bench: every figure against the raw ceiling measured in the same run (see tools/bench).
import Foundation
import Histogram
import LedgerCore
import LedgerEngine
import LedgerNATS
import Logging

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct Options {
    var quick = false
    var ledgerflow = ".build/release/ledgerflow"
    var out = "bench-results"
    var only: Set<String> = []
    /// What limits each missed target, by figure key (see Report.loadLimits).
    var limits = "tools/bench-limits.json"
    /// Where BENCHMARKS.md links the pictures (tools/bench copies them there).
    var picturesLink = "docs/bench"
    /// The run listing's sizes, smallest first (default 10,000 and 1,000,000; --quick 1,000 and 10,000).
    var listSizes: [Int]?

    init(_ args: [String]) {
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--quick": quick = true
            case "--ledgerflow": i += 1; ledgerflow = args[i]
            case "--out": i += 1; out = args[i]
            case "--only": i += 1; only = Set(args[i].split(separator: ",").map(String.init))
            case "--limits": i += 1; limits = args[i]
            case "--pictures-link": i += 1; picturesLink = args[i]
            case "--list-sizes": i += 1; listSizes = args[i].split(separator: ",").compactMap { Int($0) }.sorted()
            default: FileHandle.standardError.write(Data("unknown option \(args[i])\n".utf8))
            }
            i += 1
        }
    }

    func runs(_ scenario: String) -> Bool { only.isEmpty || only.contains(scenario) }
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
var logger = Logger(label: "ledgerflow.bench")
logger.logLevel = .warning

func say(_ text: String) {
    print(text)
    fflush(nil)
}

let report = Report(quick: options.quick)
report.loadLimits(from: options.limits)
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ledgerflow-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: scratch) }

let bench = Bench(options: options, report: report, scratch: scratch, logger: logger)
do {
    try await bench.runAll()
} catch {
    say("benchmark failed: \(error)")
    exit(1)
}
Plots(report: report, directory: options.out).draw()
try report.write(to: options.out, picturesLink: options.picturesLink)
say("\nwrote \(options.out)/bench.json and \(options.out)/BENCHMARKS.md")
