import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine
import LedgerProjections
import Logging

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A run's timeline read from the log itself (not the read model), and its state at any log position.")

    @OptionGroup var nats: NATSOptions
    @Argument(help: "The run id.") var run: String
    @Option(help: "Show the run's state as of this log sequence.") var at: UInt64?

    func run() async throws {
        let logger = makeLogger()
        let ledger = try await Ledger.open(
            url: nats.natsURL, clientName: "ledgerflow-replay", connectOptions: nats.connectOptions, logger: logger)
        let entries = try await ledger.read(subject: Subjects.run(run))
        guard !entries.isEmpty else {
            print("No events for run \(run) in the log (stream \(ledger.stream) at \(nats.displayURL)).")
            throw ExitCode(1)
        }
        let decoder = JSONDecoder()
        var state: RunState?
        var lines: [(UInt64, String)] = []
        var related: Set<UInt64> = []
        for message in entries {
            let sequence = message.sequence
            let event: LedgerEvent
            switch LogAdmission.admit(subject: message.subject, payload: message.payload, messageID: message.messageID)
            {
            case .event(let admitted):
                event = admitted
            case .skipped(let reason, let fold):
                if let fold, at == nil || sequence <= at! { state = RunState.evolve(state, fold, sequence: sequence) }
                lines.append((sequence, "(skipped by the read models: \(reason))"))
                continue
            case .ignored:
                continue
            }
            if at == nil || sequence <= at! { state = RunState.evolve(state, event, sequence: sequence) }
            lines.append(
                (
                    sequence,
                    "\(event.time)  \(event.type.padding(toLength: 22, withPad: " ", startingAt: 0)) \(Self.essentials(event.body))"
                ))
            switch event.body {
            case .runStarted(let e): if let s = e.trigger.sequence { related.insert(s) }
            case .stepAttemptSucceeded(let e): if let s = e.source_sequence { related.insert(s) }
            case .stepAttemptFailed(let e), .compensationFailed(let e):
                if let s = e.source_sequence { related.insert(s) }
            case .compensationSucceeded(let e): if let s = e.source_sequence { related.insert(s) }
            case .stepLateResultRecorded(let e): if let s = e.source_sequence { related.insert(s) }
            default: break
            }
        }
        // The inbound messages the run's events point at (its trigger, the answers it received).
        for sequence in related {
            guard let stored = try await ledger.message(at: sequence),
                let event = try? decoder.decode(CloudEvent<JSONValue>.self, from: Data(stored.payload))
            else { continue }
            let summary = Self.clip(event.data.compactJSON)
            lines.append(
                (
                    sequence,
                    "\(event.time ?? stored.time ?? "")  \(event.type.padding(toLength: 22, withPad: " ", startingAt: 0)) on \(stored.subject): \(summary)"
                ))
        }
        print("Run \(run), from stream \(ledger.stream):")
        print("   seq  time                      type                   essentials")
        for (sequence, line) in lines.sorted(by: { $0.0 < $1.0 }) {
            let marker = at.map { sequence > $0 ? "  (after --at)" : "" } ?? ""
            print(String(sequence).leftPad(6) + "  " + line + marker)
        }
        if let state {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(at.map { "\nState as of log sequence \($0):" } ?? "\nState:")
            print(String(decoding: try encoder.encode(state), as: UTF8.self))
        } else if let at {
            print("\nThe run had not started at log sequence \(at).")
        }
    }

    static func clip(_ text: String, _ limit: Int = 140) -> String {
        text.count > limit ? String(text.prefix(limit)) + "…" : text
    }

    static func essentials(_ body: LedgerEvent.Body) -> String {
        switch body {
        case .runStarted(let e):
            return
                "\(e.flow_id) v\(e.flow_version) \(e.mode.rawValue) by \(e.actor), trigger \(e.trigger.kind.rawValue)\(e.trigger.event_type.map { " \($0)" } ?? "")\(e.trigger.sequence.map { " @\($0)" } ?? "")"
        case .stepAttemptStarted(let e):
            return "step \(e.step_id) attempt \(e.attempt), command \(e.command_id ?? "-"), key \(e.idempotency_key)"
        case .stepAttemptSucceeded(let e):
            return
                "step \(e.step_id) attempt \(e.attempt) → \(clip(e.output.compactJSON))\(e.source_sequence.map { " (answer @\($0))" } ?? "")"
        case .stepAttemptFailed(let e):
            return
                "step \(e.step_id) attempt \(e.attempt): \(e.error.kind): \(e.error.message)\(e.retry_at.map { ", retry at \($0)" } ?? ", no retry")"
        case .stepSkipped(let e): return "step \(e.step_id): \(e.reason)"
        case .stepLateResultRecorded(let e):
            return
                "step \(e.step_id) attempt \(e.attempt) answered after it was abandoned → \(clip(e.output.compactJSON))\(e.source_sequence.map { " (answer @\($0))" } ?? "")"
        case .runSucceeded(let e): return "output \(clip(e.output.compactJSON))"
        case .runFailed(let e): return "\(e.error.code): \(e.error.message)"
        case .runCompensating(let e): return "compensating after \(e.error.code): \(e.error.message)"
        case .compensationStarted(let e):
            return "undo \(e.step_id) attempt \(e.attempt), command \(e.command_id ?? "-")"
        case .compensationSucceeded(let e): return "undid \(e.step_id) → \(clip(e.output.compactJSON))"
        case .compensationFailed(let e):
            return
                "undo \(e.step_id) attempt \(e.attempt): \(e.error.kind): \(e.error.message)\(e.retry_at.map { ", retry at \($0)" } ?? ", no retry")"
        case .runCancelRequested(let e): return "by \(e.actor)\(e.reason.map { ": \($0)" } ?? "")"
        case .runCancelled(let e): return "by \(e.actor)"
        case .runRedriven(let e):
            return "by \(e.actor) from \(e.from_step), again: \(e.reset_steps.joined(separator: ", "))"
        case .runClaimed(let e):
            return
                "driven by \(e.worker) now (was \(e.previous_worker ?? "nobody")): \(e.reason)\(e.in_flight.isEmpty ? "" : "; re-sending \(e.in_flight.joined(separator: ", "))")"
        case .runAcknowledged(let e):
            return e.text.map { "acknowledged: \(clip($0))" } ?? "acknowledgement not sent: \(e.error ?? "")"
        case .deliveryStarted(let e):
            return "webhook attempt \(e.attempt) to \(e.url), output @\(e.output_sequence), key \(e.idempotency_key)"
        case .deliverySucceeded(let e), .deliveryFailed(let e):
            let answer = e.http_status.map { "HTTP \($0)" } ?? "no answer"
            guard let error = e.error else { return "webhook attempt \(e.attempt): \(answer), delivered" }
            return
                "webhook attempt \(e.attempt): \(answer), \(error.kind): \(error.message)\(e.retry_at.map { ", retry at \($0)" } ?? ", dead letter")"
        case .deliveryRedriven(let e): return "webhook delivery redriven by \(e.actor)"
        default: return ""
        }
    }
}

extension String {
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

struct Projections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read models.", subcommands: [Rebuild.self, Skipped.self])

    struct Skipped: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Log messages the read models could not apply, with the reason (they stay in the log; see `replay`).")

        @Option(help: "The data directory holding lmdb/.") var dataDir = "./.ledgerflow"
        @Option(help: "At most this many, oldest first.") var limit = 100

        func run() async throws {
            let path = "\(dataDir)/lmdb"
            guard FileManager.default.fileExists(atPath: "\(path)/data.mdb") else {
                print("There are no read models at \(path): pass the --data-dir that `serve` uses.")
                throw ExitCode(1)
            }
            let store = try ReadModelStore(path: path)
            let rows = try store.skipped(limit: max(1, limit))
            if rows.isEmpty {
                print("The read models skipped no log message.")
                return
            }
            print("   seq  subject                                   reason")
            for row in rows {
                print(
                    String(row.sequence).leftPad(6) + "  "
                        + row.subject.prefix(40).padding(toLength: 41, withPad: " ", startingAt: 0) + " " + row.reason)
            }
            if store.skippedCount > rows.count { print("(\(store.skippedCount - rows.count) more; raise --limit)") }
        }
    }

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Rebuild the LMDB read models from the log (refused while a `serve` or `dev` uses the data directory), or check them with --verify."
        )

        @OptionGroup var nats: NATSOptions
        @Option(help: "The data directory holding lmdb/.") var dataDir = "./.ledgerflow"
        @OptionGroup var lmdb: LMDBOptions
        @Flag(
            help:
                "Rebuild into a scratch directory and compare with the live models, key by key (the live ones are untouched)."
        )
        var verify = false

        func run() async throws {
            let logger = makeLogger()
            let live = "\(dataDir)/lmdb"
            // The swap replaces the models under whoever writes them: only when no serve or dev holds the
            // directory, which they do for as long as they run (--verify swaps nothing and reads alongside them).
            var lock: DataDirectoryLock?
            if !verify {
                do {
                    lock = try DataDirectoryLock.acquire(
                        dataDirectory: dataDir, command: "ledgerflow projections rebuild")
                } catch let busy as DataDirectoryLock.Busy {
                    print(
                        """
                        Not rebuilding: \(busy), which keeps the read models in \(live) up to date; swapping them under it would lose what it writes.
                        Stop it first\(busy.pid.map { " (kill -INT \($0))" } ?? "") and run this again, or rebuild into another directory with --data-dir DIR and start serve with that --data-dir.
                        To check the live models without stopping it: ledgerflow projections rebuild --verify.
                        """)
                    throw ExitCode(1)
                } catch let error as RuntimeError {
                    print("Not rebuilding: \(error)")
                    throw ExitCode(1)
                }
            }
            defer { lock?.release() }
            let ledger = try await Ledger.open(
                url: nats.natsURL, clientName: "ledgerflow-rebuild", connectOptions: nats.connectOptions, logger: logger
            )
            let scratch = "\(dataDir)/lmdb.rebuild-\(getpid())"
            try? FileManager.default.removeItem(atPath: scratch)
            var liveStore: ReadModelStore?
            var target = try await ledger.lastSequence()
            if verify {
                guard FileManager.default.fileExists(atPath: "\(live)/data.mdb") else {
                    print("There are no live read models at \(live) to verify.")
                    throw ExitCode(1)
                }
                liveStore = try ReadModelStore(path: live, mapSize: try lmdb.mapSize())
                target = try liveStore!.checkpoint()
            }
            let store = try ReadModelStore.forRebuild(
                path: scratch, mapSize: try lmdb.mapSize(), writerNiceness: try lmdb.writerNiceness(default: 0))
            let started = ContinuousClock.now
            let bar = ProgressBar(total: target)
            if target > 0 {
                try await Projector(ledger: ledger, store: store, recordsSkips: false, logger: logger).follow(
                    until: target
                ) { bar.show($0) }
            }
            try store.sync()
            bar.finish()
            let seconds = (ContinuousClock.now - started) / .seconds(1)
            print(
                "Replayed \(target) log messages in \(String(format: "%.1f", seconds)) s (\(Int(Double(target) / max(seconds, 0.001))) messages/s)."
            )
            if store.skippedCount > 0 {
                print(
                    "\(store.skippedCount) message(s) could not be applied and were skipped, as the live projector skips them (`ledgerflow projections skipped`)."
                )
            }
            if let liveStore {
                let differences = try compare(try store.dump(), try liveStore.dump())
                try? FileManager.default.removeItem(atPath: scratch)
                if differences.isEmpty {
                    print(
                        "Verified: the rebuilt read models equal the live ones at log position \(target), key by key.")
                } else {
                    print("The rebuilt read models differ from the live ones at log position \(target):")
                    for line in differences.prefix(20) { print("  " + line) }
                    throw ExitCode(1)
                }
            } else {
                let old = "\(dataDir)/lmdb.old-\(getpid())"
                if FileManager.default.fileExists(atPath: live) {
                    try FileManager.default.moveItem(atPath: live, toPath: old)
                }
                try FileManager.default.moveItem(atPath: scratch, toPath: live)
                try? FileManager.default.removeItem(atPath: old)
                print("The read models in \(live) are rebuilt.")
            }
        }

        func compare(
            _ a: [String: [(key: [UInt8], value: [UInt8])]], _ b: [String: [(key: [UInt8], value: [UInt8])]]
        ) throws -> [String] {
            var out: [String] = []
            for table in a.keys.sorted() {
                let left = Dictionary(a[table]!.map { ($0.key, $0.value) }, uniquingKeysWith: { x, _ in x })
                let right = Dictionary((b[table] ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { x, _ in x })
                for (key, value) in left where right[key] != value {
                    out.append(
                        "\(table)/\(String(decoding: key, as: UTF8.self)): \(right[key] == nil ? "missing from the live models" : "different value")"
                    )
                }
                for key in right.keys where left[key] == nil {
                    out.append("\(table)/\(String(decoding: key, as: UTF8.self)): only in the live models")
                }
            }
            return out
        }
    }
}

/// A progress bar on standard error.
final class ProgressBar: @unchecked Sendable {
    let total: UInt64
    let started = ContinuousClock.now
    let lock = NSLock()
    var last = ContinuousClock.now - .seconds(1)

    init(total: UInt64) { self.total = total }

    func show(_ done: UInt64, force: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        guard force || ContinuousClock.now - last > .milliseconds(100) else { return }
        last = ContinuousClock.now
        let fraction = total == 0 ? 1 : min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = Double(done) / max(0.001, (ContinuousClock.now - started) / .seconds(1))
        let line =
            "\r[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(Int(fraction * 100))% \(done)/\(total) messages, \(Int(rate))/s"
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        show(total, force: true)
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a message (debugging): a CloudEvent as given, or data wrapped in one with --type.")

    @OptionGroup var nats: NATSOptions
    @Argument(help: "Subject, e.g. assistant.command.issued") var subject: String
    @Argument(help: "JSON: a whole CloudEvent, or its data with --type") var json: String
    @Option(help: "Wrap the JSON as the data of a CloudEvent of this type.") var type: String?

    func run() async throws {
        let logger = makeLogger()
        var payload = Array(json.utf8)
        var id = EventID.make()
        if let type {
            guard let data = try? JSONDecoder().decode(JSONValue.self, from: Data(payload)) else {
                print("The JSON argument is not valid JSON.")
                throw ExitCode(1)
            }
            payload = try EventCodec().encode(CloudEvent(id: id, source: LedgerSource.cli, type: type, data: data))
        } else if let event = try? JSONDecoder().decode(JSONValue.self, from: Data(payload)),
            let given = event["id"]?.stringValue
        {
            id = given
        }
        let ledger = try await Ledger.open(
            url: nats.natsURL, clientName: "ledgerflow-publish", connectOptions: nats.connectOptions, logger: logger)
        defer { ledger.close() }
        if let sent = try await ledger.send(payload: payload, id: id, on: subject, retry: .once) {
            print(
                "appended to \(ledger.stream) at sequence \(sent.sequence)\(sent.duplicate ? " (duplicate of an earlier publish; not stored again)" : "") with id \(id)"
            )
        } else {
            print("published on \(subject) (not a stream subject)")
        }
    }
}

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print events as they are appended to the log.")

    @OptionGroup var nats: NATSOptions
    @Option(help: "Only this subject (wildcards allowed), e.g. 'ledger.run.>'.") var subject: String?
    @Option(help: "Only events of this CloudEvents type.") var type: String?
    @Option(help: "Start at this log sequence instead of at new messages.") var from: UInt64?
    @Option(help: "Stop after this many events.") var limit: Int?

    func run() async throws {
        let logger = makeLogger()
        let ledger = try await Ledger.open(
            url: nats.natsURL, clientName: "ledgerflow-tail", connectOptions: nats.connectOptions, logger: logger)
        defer { ledger.close() }
        let start: UInt64
        if let from { start = from } else { start = try await ledger.lastSequence() + 1 }
        let decoder = JSONDecoder()
        var printed = 0
        if let limit, limit <= 0 { return }
        for try await message in ledger.messages(subject: subject, from: start, until: .following) {
            let event = try? decoder.decode(CloudEvent<JSONValue>.self, from: Data(message.payload))
            if let type, event?.type != type { continue }
            let what =
                event.map { "\($0.type)\($0.runid.map { " run \($0)" } ?? "") \(Replay.clip($0.data.compactJSON))" }
                ?? "(not a CloudEvent, \(message.payload.count) bytes)"
            print("\(String(message.sequence).leftPad(6))  \(event?.time ?? "")  \(message.subject)  \(what)")
            fflush(nil)
            printed += 1
            if let limit, printed >= limit { break }
        }
    }
}
