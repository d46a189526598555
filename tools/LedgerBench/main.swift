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
    /// What limits each missed target, by figure key (see Report.loadLimits); nil: tools/bench-limits.json of the
    /// checkout the benchmark was built in (found from the executable's place), else of the working directory.
    var limits: String?
    /// Where BENCHMARKS.md links the pictures (tools/bench copies them there).
    var picturesLink = "docs/bench"
    /// The run listing's sizes, smallest first (default 10,000 and 1,000,000; --quick 1,000 and 10,000).
    var listSizes: [Int]?

    static let scenarios: Set<String> = ["append", "e2e", "query", "rebuild", "list", "seq40", "chain", "durability"]
    static let usage = """
        usage: ledgerflow-bench [--quick] [--only SCENARIO,...] [--ledgerflow PATH] [--out DIR] [--limits FILE]
                                [--pictures-link DIR] [--list-sizes N,N]
          scenarios: append e2e query rebuild list seq40 chain durability (default: all)
        """

    /// Reads the arguments; anything it does not know ends the program with the usage (exit 2) before any work.
    init(_ args: [String]) {
        func refuse(_ problem: String) -> Never {
            FileHandle.standardError.write(Data("ledgerflow-bench: \(problem)\n\(Self.usage)\n".utf8))
            exit(2)
        }
        var i = 0
        func value() -> String {
            i += 1
            guard i < args.count else { refuse("\(args[i - 1]) needs a value") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--quick": quick = true
            case "--ledgerflow": ledgerflow = value()
            case "--out": out = value()
            case "--only":
                only = Set(value().split(separator: ",").map(String.init))
                let unknown = only.subtracting(Self.scenarios)
                if !unknown.isEmpty { refuse("no scenario named \(unknown.sorted().joined(separator: ", "))") }
            case "--limits": limits = value()
            case "--pictures-link": picturesLink = value()
            case "--list-sizes":
                let text = value()
                let sizes = text.split(separator: ",").map { Int($0) }
                guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    refuse("--list-sizes takes positive whole numbers separated by commas, not \(text)")
                }
                listSizes = sizes.compactMap { $0 }.sorted()
            case "--help", "-h":
                print(Self.usage)
                exit(0)
            default: refuse("unknown option \(args[i])")
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
if let path = options.limits ?? Report.defaultLimitsFile() {
    report.loadLimits(from: path)
} else {
    say(
        "no tools/bench-limits.json above \(CommandLine.arguments[0]) or in \(FileManager.default.currentDirectoryPath):"
            + " each miss will say 'not profiled yet'; pass --limits FILE")
}
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
