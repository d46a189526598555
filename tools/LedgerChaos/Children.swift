import Dispatch
import Foundation
import Synchronization

/// A child process of the harness (a nats-server node, a `ledgerflow serve`), which never outlives it: it is
/// started behind a small shell that leaves a watcher on a pipe only the harness holds open, so when the harness
/// ends however it ends (even SIGKILL), the pipe closes and the watcher stops the child; and every child is in
/// `Children.all`, which the harness's exit paths (the end, an error, SIGINT, SIGTERM) kill.
final class Child: @unchecked Sendable {
    let name: String
    private let process = Process()
    private let lifeline = Pipe()
    let logFile: String

    init(
        name: String, executable: String, arguments: [String], environment: [String: String]? = nil, logFile: String
    )
        throws
    {
        self.name = name
        self.logFile = logFile
        let guardScript = """
            exec 3<&0
            ( cat <&3 >/dev/null; kill -TERM $$ 2>/dev/null; sleep 5; kill -KILL $$ 2>/dev/null ) &
            exec "$0" "$@" 3<&- </dev/null
            """
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", guardScript, executable] + arguments
        if let environment { process.environment = environment }
        // Only the harness may hold the write end, or the pipe would never close.
        _ = fcntl(lifeline.fileHandleForWriting.fileDescriptor, F_SETFD, FD_CLOEXEC)
        if !FileManager.default.fileExists(atPath: logFile) {
            _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = lifeline
        try process.run()
        try? handle.close()
        Children.add(self)
    }

    var pid: Int32 { process.processIdentifier }

    /// Whether it still runs (reaping it once it ended: see `Reaper`).
    var isRunning: Bool {
        ended.withLock { ended in
            if ended { return false }
            ended = Reaper.ended(process.processIdentifier)
            return !ended
        }
    }
    private let ended = Mutex(false)

    /// Sends `signal` (SIGSTOP, SIGCONT...).
    func signal(_ signal: Int32) {
        guard isRunning else { return }
        _ = Glibc.kill(process.processIdentifier, signal)
    }

    /// Kills it at once (SIGKILL), as a crash would, and reaps it.
    func kill() {
        if isRunning {
            _ = Glibc.kill(process.processIdentifier, SIGCONT)
            _ = Glibc.kill(process.processIdentifier, SIGKILL)
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while isRunning, ContinuousClock.now < deadline { usleep(5_000) }
        finish()
    }

    /// Stops it with SIGTERM, then SIGKILL when it has not ended within `grace`.
    func terminate(grace: Duration = .seconds(10)) {
        if isRunning {
            _ = Glibc.kill(process.processIdentifier, SIGCONT)
            _ = Glibc.kill(process.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + grace
            while isRunning, ContinuousClock.now < deadline { usleep(20_000) }
        }
        kill()
    }

    /// Closes the lifeline (its watcher ends) and forgets it.
    private func finish() {
        try? lifeline.fileHandleForWriting.close()
        Children.remove(self)
    }

    /// Kills the process straight from a signal handler's queue, without waiting.
    fileprivate func killNow() {
        if isRunning {
            _ = Glibc.kill(process.processIdentifier, SIGCONT)
            _ = Glibc.kill(process.processIdentifier, SIGKILL)
        }
    }
}

/// Every child alive, for the exit paths.
enum Children {
    private static let live = Mutex<[ObjectIdentifier: Child]>([:])
    nonisolated(unsafe) private static var signalSources: [any DispatchSourceSignal] = []

    static func add(_ child: Child) { live.withLock { $0[ObjectIdentifier(child)] = child } }
    static func remove(_ child: Child) { _ = live.withLock { $0.removeValue(forKey: ObjectIdentifier(child)) } }

    /// Kills every child still alive.
    static func killAll() {
        let children = live.withLock { Array($0.values) }
        for child in children { child.killNow() }
        for child in children { child.kill() }
    }

    /// SIGINT and SIGTERM kill every child, then end the harness with 130 / 143.
    static func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            Glibc.signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("\nchaos: interrupted; stopping every process it started\n".utf8))
                killAll()
                exit(128 + sig)
            }
            source.resume()
            signalSources.append(source)
        }
    }
}

/// Reaps children with `waitpid` instead of `Process.waitUntilExit`: Foundation learns that a child ended from
/// SIGCHLD, which in an async `main` can go undelivered (the main thread has left for the dispatch main queue, and
/// dispatch's worker threads block signals), so `waitUntilExit` would wait forever beside a zombie.
enum Reaper {
    /// Whether `pid` has ended; reaps it when it has (also true when someone else reaped it already).
    static func ended(_ pid: Int32) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    /// Waits (at most `timeout`) until `pid` ends and returns its exit status (nil when it was reaped elsewhere,
    /// killed by a signal, or still runs at the deadline).
    static func exitStatus(_ pid: Int32, timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : nil }
            if result == -1, errno == ECHILD { return nil }
            usleep(10_000)
        }
        return nil
    }
}
