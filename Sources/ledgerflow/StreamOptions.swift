import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// How `serve` and `dev` create the ledger stream (and the workers' bucket).
struct StreamOptions: ParsableArguments {
    @Option(
        name: .customLong("replicas"),
        help: ArgumentHelp(
            "Copies of the ledger stream and the workers' bucket on a nats-server cluster (1 to 5; default 1; 3 on a 3-node cluster). An existing stream with fewer is raised to this; one with more is never lowered. Env LEDGERFLOW_REPLICAS.",
            valueName: "N"))
    var replicasOption: Int?

    static let environmentKey = "LEDGERFLOW_REPLICAS"

    @Option(
        name: .customLong("event-subjects"),
        help: ArgumentHelp(
            "Subjects other services publish their events on, comma-separated (default events.>): each is added to the ledger stream, and an event there starts every active flow whose trigger names its type. Env LEDGERFLOW_EVENT_SUBJECTS.",
            valueName: "SUBJECTS"))
    var eventSubjectsOption: String?

    static let eventSubjectsKey = "LEDGERFLOW_EVENT_SUBJECTS"

    @Flag(
        name: .customLong("atomic-batches"),
        help: ArgumentHelp(
            "Decide a run's consecutive local steps (transform, whose outcome needs nothing from outside) ahead and append them together, all or none, in one atomic batch, where the stream takes them (nats-server 2.12+). Off by default: with nats-server 2.15.1 it measured slower than one event at a time."
        ))
    var atomicBatches = false

    func validate() throws {
        _ = try replicas()
        _ = try eventSubjects()
    }

    /// The event subjects asked for: the option, else the environment variable, else `events.>`.
    func eventSubjects() throws -> [String] {
        let text: String
        let source: String
        if let eventSubjectsOption {
            (text, source) = (eventSubjectsOption, "--event-subjects")
        } else if let value = ProcessInfo.processInfo.environment[Self.eventSubjectsKey] {
            (text, source) = (value, Self.eventSubjectsKey)
        } else {
            return [Subjects.events]
        }
        let subjects = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
        if let problem = EventSubjectPolicy.problem(subjects) { throw ValidationError("\(source): \(problem)") }
        return subjects
    }

    /// The replicas asked for: the option, else the environment variable, else 1.
    func replicas() throws -> Int {
        let value: Int
        let source: String
        if let replicasOption {
            (value, source) = (replicasOption, "--replicas")
        } else if let text = ProcessInfo.processInfo.environment[Self.environmentKey] {
            guard let parsed = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError(
                    "\(Self.environmentKey): \"\(text.prefix(20))\" is not a whole number from 1 to 5")
            }
            (value, source) = (parsed, Self.environmentKey)
        } else {
            return 1
        }
        guard (1...5).contains(value) else {
            throw ValidationError("\(source): \(value) replicas; JetStream keeps 1 to 5 (3 on a 3-node cluster)")
        }
        return value
    }

    /// The stream's configuration with these settings.
    func configuration() throws -> LedgerConfiguration {
        var configuration = LedgerConfiguration()
        configuration.replicas = try replicas()
        configuration.subjects = Subjects.streamSubjects + (try eventSubjects())
        configuration.atomicBatches = atomicBatches
        return configuration
    }
}
