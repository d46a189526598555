import Foundation
import LedgerEngine

/// A thread as Linux shows it in `/proc/.../stat`: its id, name and nice value.
public struct ThreadStat: Sendable, Equatable {
    public var id: Int
    public var name: String
    public var nice: Int

    /// Reads `path` (`/proc/thread-self/stat`, `/proc/<pid>/task/<tid>/stat`).
    public static func read(_ path: String = "/proc/thread-self/stat") throws -> ThreadStat {
        let stat = try String(contentsOfFile: path, encoding: .utf8)
        // "tid (name) state ppid ...": the name may hold spaces, so the fields after it are counted from its ")".
        guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")"),
            let id = Int(stat[..<open].trimmingCharacters(in: .whitespaces))
        else { throw RuntimeError("unreadable \(path): \(stat.prefix(200))") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Field 19 of stat(5) is the nice value; fields[0] here is field 3 (the state).
        guard fields.count > 16, let nice = Int(fields[16]) else {
            throw RuntimeError("no nice value in \(path): \(stat.prefix(200))")
        }
        return ThreadStat(id: id, name: String(stat[stat.index(after: open)..<close]), nice: nice)
    }

    /// Every thread of process `pid` (those that end while being read are left out).
    public static func threads(of pid: Int32) throws -> [ThreadStat] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").compactMap {
            try? read("/proc/\(pid)/task/\($0)/stat")
        }
    }
}
