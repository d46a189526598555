import Foundation
import LedgerEngine
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerLMDB

/// The read models' single writer: a thread of its own, below the process's priority, that ends with its
/// environment.
@Suite struct LMDBWriterTests {
    static func currentThread() throws -> ThreadStat { try ThreadStat.read() }

    /// `writeSynchronously`, for tools that are not async: it runs on the writer's thread too and hands back what
    /// the transaction returned.
    static func countSynchronously(_ environment: LMDBEnvironment, _ table: LMDBTable) throws -> Int {
        try environment.writer.writeSynchronously { txn in
            guard try currentThread().name == "lmdb-writer" else { throw RuntimeError("not on the writer's thread") }
            return try txn.count(table)
        }
    }

    /// Each key with its value, in key order.
    static func values(_ environment: LMDBEnvironment, _ table: LMDBTable) throws -> [[UInt8]] {
        try environment.read { txn in
            var out: [[UInt8]] = []
            try txn.scan(table) { key, value in
                out.append(Array(key) + Array(value))
                return true
            }
            return out
        }
    }

    static func has(_ environment: LMDBEnvironment, _ table: LMDBTable, key: [UInt8]) throws -> Bool {
        try environment.read { txn in try txn.withValue(table, key: key) { _ in } } != nil
    }

    /// A table "t", synced every 20 ms, its writer 7 below the process's priority.
    static func periodic(_ directory: TemporaryDirectory) throws -> LMDBEnvironment {
        try LMDBEnvironment(
            path: directory.path, tables: ["t"], mapSize: 1 << 20, durability: .periodic(.milliseconds(20)),
            writerNiceness: 7)
    }

    @Test func writesRunOnTheWritersThreadBelowTheProcesssPriorityAndTheThreadEndsWithTheEnvironment() async throws {
        let directory = TemporaryDirectory("writer")
        var environment: LMDBEnvironment? = try Self.periodic(directory)
        let table = environment!.table("t")
        let caller = try Self.currentThread()
        let writer = try await environment!.writer.write { txn in
            try txn.put(table, key: [1], value: [1])
            return try Self.currentThread()
        }
        #expect(writer.name == "lmdb-writer")
        #expect(writer.id != caller.id)
        #expect(writer.nice == min(caller.nice + 7, 19), "\(writer) beside \(caller)")

        // Writes given one after another commit in that order; a failing one commits nothing and says why.
        for i in 2...50 {
            try await environment!.writer.write { txn in try txn.put(table, key: [UInt8(i)], value: [UInt8(i - 1)]) }
        }
        await #expect(throws: RuntimeError.self) {
            try await environment!.writer.write { txn in
                try txn.put(table, key: [99], value: [99])
                throw RuntimeError("refused")
            }
        }
        #expect(try Self.countSynchronously(environment!, table) == 50)
        #expect(try Self.has(environment!, table, key: [99]) == false)
        #expect(try Self.values(environment!, table) == (1...50).map { [UInt8($0), UInt8(max($0 - 1, 1))] })

        // The environment closes and its thread ends.
        environment = nil
        try await eventually("the writer's thread ends with its environment") {
            !FileManager.default.fileExists(atPath: "/proc/self/task/\(writer.id)")
        }
        let reopened = try LMDBEnvironment(path: directory.path, tables: ["t"], mapSize: 1 << 20)
        #expect(try Self.countSynchronously(reopened, reopened.table("t")) == 50)
    }

    /// What an inbox's jobs and syncs did, seen from the test.
    final class Seen: Sendable {
        let ran = Mutex<[Int]>([])
        let syncs = Mutex(0)
        let ended = Mutex(false)
        var jobs: [Int] { ran.withLock { $0 } }
        var syncCount: Int { syncs.withLock { $0 } }
    }

    /// The inbox behind the writer's thread: jobs in order, the group commit's sync after the interval (and not
    /// without commits), every job posted before the stop run, later ones run by their caller.
    @Test func theWritersInboxRunsJobsInOrderAndSyncsOnceAfterTheInterval() async throws {
        let inbox = WriterInbox()
        let seen = Seen()
        Thread {
            inbox.serve(syncEvery: .milliseconds(30)) { seen.syncs.withLock { $0 += 1 } }
            seen.ended.withLock { $0 = true }
        }.start()
        try await Task.sleep(for: .milliseconds(80))
        #expect(seen.syncCount == 0, "no sync without a commit")
        for i in 0..<100 { inbox.post { seen.ran.withLock { $0.append(i) } } }
        try await eventually("the jobs ran") { seen.jobs.count == 100 }
        #expect(seen.jobs == Array(0..<100))
        try await eventually("a sync follows the commits", timeout: .seconds(5)) { seen.syncCount == 1 }
        try await Task.sleep(for: .milliseconds(100))
        #expect(seen.syncCount == 1, "one sync for all the commits before it, none while idle")
        #expect(!inbox.isServingThread)

        inbox.post { seen.ran.withLock { $0.append(100) } }
        inbox.stop()
        try await eventually("the thread ends once stopped") { seen.ended.withLock { $0 } }
        #expect(seen.jobs.last == 100, "a job posted before the stop still ran")
        inbox.post { seen.ran.withLock { $0.append(101) } }
        #expect(seen.jobs.last == 101, "a job posted after the stop ran before post returned, on its caller")
    }

    @Test func anInboxWithoutAnIntervalNeverSyncs() async throws {
        let inbox = WriterInbox()
        let seen = Seen()
        Thread { inbox.serve(syncEvery: nil) { seen.syncs.withLock { $0 += 1 } } }.start()
        for i in 0..<10 { inbox.post { seen.ran.withLock { $0.append(i) } } }
        try await eventually("the jobs ran") { seen.jobs.count == 10 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(seen.syncCount == 0)
        inbox.stop()
    }

    /// The periodic fsync's own thread (`BackgroundSync`): the writer asks and goes on; asking while a sync runs
    /// makes one more after it, however often asked; `stop` waits for the sync in progress.
    final class Gate: Sendable {
        let started = Mutex(0)
        let finished = Mutex(0)
        let open = DispatchSemaphore(value: 0)
        let thread = Mutex("")
        var startedCount: Int { started.withLock { $0 } }
        var finishedCount: Int { finished.withLock { $0 } }
        func sync() {
            started.withLock { $0 += 1 }
            thread.withLock { $0 = (try? ThreadStat.read().name) ?? "" }
            open.wait()
            finished.withLock { $0 += 1 }
        }
    }

    @Test func aSyncAskedForWhileOneRunsRunsOnceMoreAfterIt() async throws {
        let gate = Gate()
        let syncer = try #require(BackgroundSync(name: "test-sync") { gate.sync() })
        syncer.request()
        try await eventually("the sync started") { gate.startedCount == 1 }
        #expect(gate.thread.withLock { $0 } == "test-sync")
        for _ in 0..<5 { syncer.request() }  // while it runs: one more, not five
        gate.open.signal()
        try await eventually("the second sync started") { gate.startedCount == 2 }
        gate.open.signal()
        try await eventually("the second sync finished") { gate.finishedCount == 2 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(gate.startedCount == 2, "asked five times while one ran: one more, not five")
        for _ in 0..<5 { gate.open.signal() }  // should more have started, stop would wait for them
        syncer.stop()
    }

    @Test func stoppingWaitsForTheSyncInProgress() async throws {
        let gate = Gate()
        let syncer = try #require(BackgroundSync(name: "test-sync") { gate.sync() })
        syncer.request()
        try await eventually("the sync started") { gate.startedCount == 1 }
        let stopped = Mutex(false)
        Thread {
            syncer.stop()
            stopped.withLock { $0 = true }
        }.start()
        try await Task.sleep(for: .milliseconds(50))
        #expect(stopped.withLock { $0 } == false, "stop returned while the sync still ran")
        gate.open.signal()
        try await eventually("stop returned once the sync finished") { stopped.withLock { $0 } }
        #expect(gate.finishedCount == 1)
    }

    /// The environment's last reference released inside the sync (the sync holds it while it runs) closes the
    /// environment on the sync's own thread: stopping there must not wait for itself, and the thread ends.
    @Test func aSyncStoppedFromItsOwnThreadEnds() async throws {
        final class Holder: Sendable {
            let syncer = Mutex<BackgroundSync?>(nil)
            let stopped = Mutex(false)
        }
        let holder = Holder()
        let syncer = try #require(
            BackgroundSync(name: "test-sync") {
                holder.syncer.withLock { $0 }?.stop()
                holder.stopped.withLock { $0 = true }
            })
        let id = try #require(syncer.threadID)
        holder.syncer.withLock { $0 = syncer }
        syncer.request()
        try await eventually("stop returned on the sync's own thread") { holder.stopped.withLock { $0 } }
        try await eventually("the sync's thread ended") {
            !FileManager.default.fileExists(atPath: "/proc/self/task/\(id)")
        }
    }

    /// An environment with a periodic fsync has its sync thread, at the process's priority (not the writer's), which
    /// the writer asks for the fsync after its commits, and which ends with it.
    @Test func theSyncThreadEndsWithItsEnvironment() async throws {
        let directory = TemporaryDirectory("sync-thread")
        var environment: LMDBEnvironment? = try Self.periodic(directory)
        let table = environment!.table("t")
        try await environment!.writer.write { txn in try txn.put(table, key: [1], value: [1]) }
        let syncer = try #require(environment!.writer.syncer)
        let id = try #require(syncer.threadID)
        try await eventually("the writer had its commit synced") { syncer.runs >= 1 }
        let sync = try ThreadStat.read("/proc/self/task/\(id)/stat")
        #expect(sync.name == "lmdb-sync")
        #expect(sync.nice == (try Self.currentThread()).nice)
        environment = nil
        try await eventually("the sync's thread ends with its environment") {
            !FileManager.default.fileExists(atPath: "/proc/self/task/\(id)")
        }
        // Without a periodic fsync there is no sync thread.
        let other = TemporaryDirectory("no-sync-thread")
        let unsynced = try LMDBEnvironment(path: other.path, tables: ["t"], mapSize: 1 << 20, durability: .noSync)
        #expect(unsynced.writer.syncer == nil)
    }
}
