import Foundation
import LedgerEngine

/// An exclusive `flock` on `<data-dir>/ledgerflow.lock`, taken by every process that writes the read models there
/// (`serve`, `dev`, `projections rebuild`) and held until it ends. The kernel releases it when the process ends,
/// however it ends (even `kill -9`), so a crashed process never leaves a lock that blocks the next one. The file
/// holds the pid and the command of the process holding it, to name it to the one refused.
struct DataDirectoryLock {
    static let fileName = "ledgerflow.lock"

    let path: String
    private let descriptor: Int32

    /// Another process holds the lock.
    struct Busy: Error, CustomStringConvertible {
        var directory: String
        /// "pid 123, ledgerflow serve", when the holder wrote it.
        var holder: String?
        var description: String {
            "the data directory \(directory) is in use by \(holder.map { "another ledgerflow (\($0))" } ?? "another ledgerflow process")"
        }
        /// The pid of the holder, when known.
        var pid: Int32? {
            guard let holder, holder.hasPrefix("pid ") else { return nil }
            return Int32(holder.dropFirst(4).prefix { $0.isNumber })
        }
    }

    /// Takes the lock without waiting, for `command` (e.g. "ledgerflow serve"); throws `Busy` when another process
    /// holds it. The lock is held until the process ends (the descriptor is closed on exec, so children such as
    /// `dev`'s nats-server never inherit it).
    static func acquire(dataDirectory: String, command: String) throws -> DataDirectoryLock {
        try FileManager.default.createDirectory(
            atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = "\(dataDirectory)/\(fileName)"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            let reason = String(cString: strerror(errno))
            throw RuntimeError(
                "cannot open \(path) (\(reason)): check that the data directory is writable by this user, or pass another --data-dir"
            )
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            defer { close(descriptor) }
            if failure == EWOULDBLOCK {
                throw Busy(directory: dataDirectory, holder: Self.holder(of: descriptor))
            }
            throw RuntimeError(
                "cannot lock \(path) (\(String(cString: strerror(failure)))): the data directory must be on a file system with flock(2) (a local disk)"
            )
        }
        let line = "pid \(getpid()), \(command)\n"
        _ = ftruncate(descriptor, 0)
        _ = line.withCString { pwrite(descriptor, $0, strlen($0), 0) }
        return DataDirectoryLock(path: path, descriptor: descriptor)
    }

    private static func holder(of descriptor: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 200)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    /// Gives the lock up before the process ends.
    func release() {
        close(descriptor)
    }
}
