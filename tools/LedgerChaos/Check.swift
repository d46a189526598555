import ChaosAudit
import Foundation
import LedgerCore
import LedgerEngine
import LedgerProjections
import LedgerTestSupport
import Logging

/// The log's own account of the runs: every run folded from its events (as the read models and `replay` fold
/// them), and the attempts started under each idempotency key.
struct LogAccount {
    var runs: [String: RunState] = [:]
    var attempts: [String: [String: Int]] = [:]
    var lastSequence: UInt64 = 0

    static func read(_ ledger: Ledger) async throws -> LogAccount {
        var account = LogAccount()
        for try await message in ledger.messages(subject: "ledger.run.>", from: 1, until: .now) {
            account.lastSequence = max(account.lastSequence, message.sequence)
            let event: LedgerEvent
            switch LogAdmission.admit(subject: message.subject, payload: message.payload, messageID: message.messageID)
            {
            case .event(let admitted): event = admitted
            case .skipped(_, let fold?): event = fold
            case .skipped, .ignored: continue
            }
            guard let runID = event.runid else { continue }
            if let state = RunState.evolve(account.runs[runID], event, sequence: message.sequence) {
                account.runs[runID] = state
            }
            switch event.body {
            case .stepAttemptStarted(let started), .compensationStarted(let started):
                account.attempts[runID, default: [:]][started.idempotency_key, default: 0] += 1
            default: break
            }
        }
        return account
    }

    var unsettled: [RunState] { runs.values.filter { !$0.isSettled } }

    var facts: [RunFacts] {
        runs.values.map { state in
            RunFacts(
                runID: state.run_id, flowID: state.flow_id, dedupKey: state.dedup_key, status: state.status.rawValue,
                terminal: state.isSettled, attemptsByKey: attempts[state.run_id] ?? [:])
        }
    }
}

/// The end of a chaos run: waits for quiet, then compares each worker's read models with the log.
struct Check {
    let ledger: Ledger
    let workers: [Worker]
    let settings: ChaosSettings
    let logger: Logger

    func say(_ text: String) { FileHandle.standardError.write(Data("chaos: \(text)\n".utf8)) }

    /// Waits (at most `timeout`) until every run in the log has settled, the log has not grown for 5 s, and every
    /// worker is ready with its read models at the end of the log. Returns the log's account as it then stands.
    func waitQuiet(timeout: Duration) async throws -> LogAccount {
        let deadline = ContinuousClock.now + timeout
        var account = try await LogAccount.read(ledger)
        var stableSince = ContinuousClock.now
        var lastSeen = try await ledger.lastSequence()
        var lastReport = ContinuousClock.now
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .seconds(1))
            let last = try await ledger.lastSequence()
            if last != lastSeen {
                lastSeen = last
                stableSince = ContinuousClock.now
            }
            account = try await LogAccount.read(ledger)
            var caughtUp = true
            for worker in workers {
                guard let health = await worker.health(), health.ready, health.lag == 0 else {
                    caughtUp = false
                    break
                }
            }
            let unsettled = account.unsettled.count
            if unsettled == 0, caughtUp, ContinuousClock.now - stableSince >= .seconds(5) { return account }
            if ContinuousClock.now - lastReport > .seconds(15) {
                lastReport = ContinuousClock.now
                say("waiting for quiet: \(unsettled) run(s) unfinished, workers caught up: \(caughtUp)")
            }
        }
        say("no quiet within \(timeout): checking the state as it is")
        return account
    }

    /// Each worker's read models against the log: `projections rebuild --verify` (a rebuild from the log compared
    /// key by key with the live models), and each run as its API shows it against the log's fold.
    func modelMismatches(_ account: LogAccount) async -> [String] {
        var mismatches: [String] = []
        for worker in workers {
            guard let health = await worker.health(), health.lag == 0 else {
                mismatches.append("worker \(worker.id): its read models are not at the end of the log")
                continue
            }
            mismatches += verify(worker)
            mismatches += await compareRuns(worker, account)
        }
        return mismatches
    }

    func verify(_ worker: Worker) -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: settings.ledgerflow)
        process.arguments = [
            "projections", "rebuild", "--verify", "--data-dir", worker.directory, "--nats-url", settings.natsURL,
            "--lmdb-map-size", "256MiB",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["LOG_LEVEL"] = "error"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return ["worker \(worker.id): rebuild --verify did not start: \(error)"] }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let status = Reaper.exitStatus(process.processIdentifier, timeout: .seconds(300))
        // The exit status is unknown (nil) when Foundation reaped the child first; the verdict line says it then.
        if status == 0 || status == nil, output.contains("Verified: the rebuilt read models equal") { return [] }
        let differences = output.split(separator: "\n").filter { $0.hasPrefix("  ") }.map {
            "worker \(worker.id): \($0.trimmingCharacters(in: .whitespaces))"
        }
        return differences.isEmpty
            ? ["worker \(worker.id): rebuild --verify failed: \(output.suffix(400))"] : differences
    }

    /// `GET /automation/runs/<id>` of every run in the log: its status and log position as the log has them.
    func compareRuns(_ worker: Worker, _ account: LogAccount) async -> [String] {
        let runs = account.runs.values.sorted { $0.run_id < $1.run_id }
        return await withTaskGroup(of: [String].self) { group in
            let lanes = 8
            for lane in 0..<lanes {
                group.addTask {
                    var out: [String] = []
                    for (index, run) in runs.enumerated() where index % lanes == lane {
                        var answer: (Int, JSONValue)?
                        for _ in 0..<3 where answer == nil {
                            answer = try? await worker.http.json("GET", "/automation/runs/\(run.run_id)")
                        }
                        guard let (status, body) = answer, status == 200 else {
                            out.append("worker \(worker.id): run \(run.run_id) is not in its read models")
                            continue
                        }
                        let shown = body["status"]?.stringValue ?? "?"
                        let position = body["last_sequence"]?.numberValue.flatMap { UInt64(exactly: $0) }
                        if shown != run.status.rawValue || position != run.last_sequence {
                            out.append(
                                "worker \(worker.id): run \(run.run_id) is \(shown) at \(position.map(String.init) ?? "?") in its read models, \(run.status.rawValue) at \(run.last_sequence) in the log"
                            )
                        }
                    }
                    return out
                }
            }
            var all: [String] = []
            for await part in group { all += part }
            return all.sorted()
        }
    }
}
