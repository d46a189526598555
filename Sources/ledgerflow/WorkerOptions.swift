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

    var leaseTTLText: String? { leaseTTLOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_LEASE_TTL"] }

    func validate() throws {
        var configuration = EngineConfiguration()
        try apply(to: &configuration)
    }

    /// Sets the lease of `configuration`, refusing values that cannot work. (A worker's id is new at every start, so
    /// a restarted process never mistakes its predecessor's runs for its own while that one may still be alive.)
    func apply(to configuration: inout EngineConfiguration) throws {
        if let text = leaseTTLText {
            guard case .success(let seconds) = DurationText.parse(text), seconds >= 0.5, seconds <= 600 else {
                throw ValidationError(
                    "--lease-ttl / LEDGERFLOW_LEASE_TTL: \"\(text.prefix(40))\" is not a duration from 500ms to 10m (e.g. 5s)"
                )
            }
            configuration.leaseTTL = .milliseconds(Int64((seconds * 1000).rounded()))
        }
    }
}
