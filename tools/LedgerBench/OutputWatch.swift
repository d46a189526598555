import Foundation
import LedgerCore
import LedgerNATS
import Synchronization

/// The bench's observer: what a user of Ledgerflow sees of a run, its final output on
/// `automation.output.produced` (one message per run, delivered by nats-server: it costs the engine nothing). It
/// records when each run's output arrived and wakes whoever waits for one. Whether the read models hold the run
/// SUCCEEDED is asked of the HTTP API (see `Bench.serveScenarios`), not decoded from the run's events.
final class OutputWatch: Sendable {
    private struct State: ~Copyable {
        var seen: [String: ContinuousClock.Instant] = [:]
        var waiters: [String: CheckedContinuation<Bool, Never>] = [:]
    }

    /// What the reader task and the waiters share.
    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let shared: Shared
    private let subscription: NATSSubscription
    private let reader: Task<Void, Never>

    init(connection: NATSConnection) throws {
        let subscription = try connection.subscribe(subject: Subjects.outputProduced)
        self.subscription = subscription
        let shared = Shared()
        self.shared = shared
        reader = Task {
            for await message in subscription.messages {
                guard let run = Self.finalOutputRun(message) else { continue }
                let now = ContinuousClock.now
                let waiter = shared.state.withLock { s -> CheckedContinuation<Bool, Never>? in
                    if s.seen[run] == nil { s.seen[run] = now }
                    return s.waiters.removeValue(forKey: run)
                }
                waiter?.resume(returning: true)
            }
        }
    }

    func stop() {
        subscription.unsubscribe()
        reader.cancel()
        let waiters = shared.state.withLock { s in
            defer { s.waiters = [:] }
            return s.waiters
        }
        for waiter in waiters.values { waiter.resume(returning: false) }
    }

    /// How many runs' final outputs arrived.
    var count: Int { shared.state.withLock { $0.seen.count } }

    /// Waits until `run`'s final output arrives (true), or `timeout` passes (false).
    func wait(for run: String, timeout: Duration) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let already = shared.state.withLock { s -> Bool in
                if s.seen[run] != nil { return true }
                s.waiters[run] = continuation
                return false
            }
            if already {
                continuation.resume(returning: true)
                return
            }
            let shared = self.shared
            Task {
                try? await Task.sleep(for: timeout)
                shared.state.withLock { $0.waiters.removeValue(forKey: run) }?.resume(returning: false)
            }
        }
    }

    /// The run whose final output `message` is: its `Nats-Msg-Id` is `<run>/output` (an acknowledgement's is
    /// `<run>/ack`).
    static func finalOutputRun(_ message: NATSMessage) -> String? {
        guard let id = message.headers["Nats-Msg-Id"], id.hasSuffix("/output") else { return nil }
        return String(id.dropLast("/output".count))
    }
}

/// Samples the heap (RssAnon) of a process every 20 ms from /proc, and keeps the largest, with the mapped file
/// pages (RssFile) at that moment: reading /proc costs the process nothing.
final class HeapSampler: Sendable {
    private final class Peak: Sendable {
        let value = Mutex<(anon: Double, file: Double)>((0, 0))
    }

    private let peak: Peak
    private let task: Task<Void, Never>

    init(pid: Int32) {
        let peak = Peak()
        self.peak = peak
        task = Task.detached {
            while !Task.isCancelled {
                let anon = ProcStatus.field("RssAnon:", pid: pid)
                let file = ProcStatus.field("RssFile:", pid: pid)
                peak.value.withLock { if anon > $0.anon { $0 = (anon, file) } }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// Stops sampling; the largest heap seen (MB) and the mapped file pages then (MB).
    func stop() -> (anon: Double, file: Double) {
        task.cancel()
        return peak.value.withLock { $0 }
    }
}

enum ProcStatus {
    /// The user and system CPU time a process has used so far, in seconds (nil when unreadable).
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: UInt8(ascii: ")"))
        else { return nil }
        // After the command's closing parenthesis (the command may hold any byte): state is field 3; utime and stime
        // are fields 14 and 15.
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 12, let user = Double(String(decoding: fields[11], as: UTF8.self)),
            let system = Double(String(decoding: fields[12], as: UTF8.self))
        else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A field of /proc/<pid>/status in MB (0 when unreadable).
    static func field(_ name: String, pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            let kb =
                line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) }
                ?? 0
            return kb / 1024
        }
        return 0
    }
}
