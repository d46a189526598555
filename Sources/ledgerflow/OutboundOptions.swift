import ArgumentParser
import Foundation
import LedgerCore

/// Where `http.request` and `emit` may send beyond the defaults: `serve` and `dev` take these.
struct OutboundOptions: ParsableArguments {
    @Option(
        name: .customLong("http-allow"),
        help: ArgumentHelp(
            "Targets http.request may reach although they are loopback, private or link-local: HOST[:PORT],... (host names, IPs, CIDR networks, [IPv6]:PORT). Env LEDGERFLOW_HTTP_ALLOW.",
            valueName: "HOST[:PORT],..."))
    var httpAllowOption: String?

    @Option(
        name: .customLong("emit-allow"),
        help: ArgumentHelp(
            "Subjects the engine consumes or publishes its own commands and outputs on that emit may publish on anyway (e.g. calendar.event.created, calendar.command.>). Env LEDGERFLOW_EMIT_ALLOW.",
            valueName: "SUBJECT,..."))
    var emitAllowOption: String?

    var httpAllowText: String? { httpAllowOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_HTTP_ALLOW"] }
    var emitAllowText: String? { emitAllowOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_EMIT_ALLOW"] }

    func validate() throws {
        _ = try policy(allowLoopback: false)
    }

    /// The policy; `dev` allows loopback too, since its demo services listen there.
    func policy(allowLoopback: Bool) throws -> OutboundPolicy {
        var policy = OutboundPolicy()
        if allowLoopback { policy.httpAllow = OutboundPolicy.loopback }
        do {
            policy.httpAllow += try HTTPAllowEntry.parseList(httpAllowText ?? "")
        } catch {
            throw ValidationError("--http-allow / LEDGERFLOW_HTTP_ALLOW: \(error.description)")
        }
        for entry in (emitAllowText ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
        where !entry.isEmpty {
            if let problem = EmitSubjectPolicy.allowEntryProblem(entry) {
                throw ValidationError("--emit-allow / LEDGERFLOW_EMIT_ALLOW: \(problem)")
            }
            policy.emitAllow.append(entry)
        }
        return policy
    }
}
