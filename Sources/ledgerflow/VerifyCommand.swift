import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// `ledgerflow verify`: walks the log once and reports every broken hash chain, missing head, deleted sequence and
/// unreadable message on run and flow subjects; exit 0 when clean, 1 when something is wrong, 2 when the log could
/// not be read.
struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the log's integrity: hash chains of runs and flows, deleted messages, unreadable events.",
        discussion: """
            Reads the whole log once. Exit status: 0 when nothing is wrong, 1 when a problem was found (each is \
            printed with its log sequence and subject), 2 when the log could not be read.
            """)

    @OptionGroup var nats: NATSOptions
    @Option(help: "Only this subject (wildcards allowed), e.g. 'ledger.run.>' or 'ledger.run.<run_id>'.")
    var subject: String?
    @Flag(help: "Print the report as one JSON document.") var json = false
    @Option(help: "Print at most this many problems (all are counted; --json lists every one).") var limit = 100

    struct Report: Encodable {
        var ok: Bool
        var messages: Int
        var first_sequence: UInt64?
        var last_sequence: UInt64?
        var subjects: Int
        var chained: Int
        var unchained: Int
        var problems: [LogProblem]
        var summary: String
    }

    func run() async throws {
        let logger = makeLogger()
        let verifier: LogVerifier
        do {
            let ledger = try await Ledger.open(
                url: nats.natsURL, clientName: "ledgerflow-verify", connectOptions: nats.connectOptions, logger: logger)
            defer { ledger.close() }
            let interactive = !json && isatty(STDERR_FILENO) != 0
            verifier = try await ledger.verify(subject: subject) { read in
                if interactive {
                    FileHandle.standardError.write(Data("\rread \(read) messages".utf8))
                }
            }
            if interactive { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        } catch {
            print(
                "Could not read the log at \(nats.displayURL): \(error). Check that nats-server runs there with JetStream and the LEDGER stream (--nats-url or LEDGERFLOW_NATS_URL), then run verify again; nothing was checked."
            )
            throw ExitCode(2)
        }
        if json {
            let report = Report(
                ok: verifier.isClean, messages: verifier.messages, first_sequence: verifier.firstSequence,
                last_sequence: verifier.lastSequence, subjects: verifier.subjects, chained: verifier.linked,
                unchained: verifier.unchained, problems: verifier.problems, summary: verifier.summary)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            for problem in verifier.problems.prefix(max(0, limit)) {
                print(
                    "\(String(problem.sequence).leftPad(8))  \(problem.kind.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0))  \(problem.detail)"
                )
            }
            if verifier.problems.count > limit {
                print("… and \(verifier.problems.count - limit) more (--limit N, or --json for all)")
            }
            print(verifier.summary)
            if !verifier.isClean {
                print(
                    "The log is the source of truth: a deleted or changed event cannot be restored from it. Compare with a backup or another replica of the stream, and see `ledgerflow replay <run_id>` for the run at each sequence above."
                )
            }
        }
        if !verifier.isClean { throw ExitCode(1) }
    }
}
