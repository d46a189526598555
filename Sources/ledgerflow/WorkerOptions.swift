import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// How this process takes part among the workers sharing a log: `serve` and `dev` take these.
struct WorkerOptions: ParsableArguments {
    @Option(
        name: .customLong("lease-ttl"),
        help: ArgumentHelp(
            "How long a worker may miss its heartbeat before another worker takes over the runs it drives (500ms to 10m; default 5s). Env LEDGERFLOW_LEASE_TTL.",
            valueName: "DURATION"))
    var leaseTTLOption: String?

    @Option(
        name: .customLong("worker-id"),
        help: ArgumentHelp(
            "This worker's id in the log (letters, digits, - and _; default <host>-<pid>-<random>, new at each start). Env LEDGERFLOW_WORKER_ID.",
            valueName: "ID"))
    var workerIDOption: String?

    @Option(
        name: .customLong("max-runs-in-flight"),
        help: ArgumentHelp(
            "Runs this worker drives at once, at most (1 to 1000000; default 10000). At the limit new triggers wait in the stream until runs finish; services' answers, operators' commands and manual runs are not held back. Env LEDGERFLOW_MAX_RUNS_IN_FLIGHT.",
            valueName: "N"))
    var maxRunsInFlightOption: String?

    var maxRunsInFlightText: String? {
        maxRunsInFlightOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_MAX_RUNS_IN_FLIGHT"]
    }
    var leaseTTLText: String? { leaseTTLOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_LEASE_TTL"] }
    var workerIDText: String? { workerIDOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_WORKER_ID"] }

    func validate() throws {
        var configuration = EngineConfiguration()
        try apply(to: &configuration)
    }

    /// Sets the lease, the worker id and the limit of runs in flight of `configuration`, refusing values that cannot work.
    func apply(to configuration: inout EngineConfiguration) throws {
        if let text = leaseTTLText {
            guard case .success(let seconds) = DurationText.parse(text), seconds >= 0.5, seconds <= 600 else {
                throw ValidationError(
                    "--lease-ttl / LEDGERFLOW_LEASE_TTL: \"\(text.prefix(40))\" is not a duration from 500ms to 10m (e.g. 5s)"
                )
            }
            configuration.leaseTTL = .milliseconds(Int64((seconds * 1000).rounded()))
        }
        if let text = maxRunsInFlightText {
            guard let limit = Int(text), (1...1_000_000).contains(limit) else {
                throw ValidationError(
                    "--max-runs-in-flight / LEDGERFLOW_MAX_RUNS_IN_FLIGHT: \"\(text.prefix(40))\" is not a whole number from 1 to 1000000 (the runs this worker drives at once; default 10000)"
                )
            }
            configuration.maxRunsInFlight = limit
        }
        if let id = workerIDText {
            guard !id.isEmpty, id.utf8.count <= 64,
                id.unicodeScalars.allSatisfy({
                    $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_")
                })
            else {
                throw ValidationError(
                    "--worker-id / LEDGERFLOW_WORKER_ID: \"\(id.prefix(40))\" must be 1 to 64 letters, digits, - or _")
            }
            configuration.workerID = id
        }
    }
}
