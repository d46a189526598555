import Foundation
import LedgerCore
import LedgerLMDB
import LedgerProjections
import LedgerTestSupport
import Testing

@testable import LedgerEngine

/// The run listing (`GET /automation/runs?flow_id=&status=&limit=`) reads ordered index tables, never every run
/// (issue 20): the same answers as sorting every run, newest first by `(created_at, run_id)`.
@Suite struct RunListingTests {
    /// Events of runs, numbered as the log would.
    struct Log {
        var events: [(sequence: UInt64, event: LedgerEvent)] = []
        var sequence: UInt64 { events.last?.sequence ?? 0 }

        mutating func start(_ run: String, flow: String, at time: String) {
            let body = LedgerEvent.Body.runStarted(
                FlowRunStarted(
                    run_id: run, flow_id: flow, flow_version: 1, definition_hash: "h", mode: .live,
                    trigger: RunTrigger(kind: .manual), actor: "t", input: ["n": .string(run)], step_ids: ["s"],
                    dedup_key: nil, message_id: nil, channel: nil))
            add(LedgerEvent(id: "\(run)-start", type: body.type, time: time, runid: run, body: body))
        }

        mutating func finish(_ run: String, as status: RunStatus) {
            let body: LedgerEvent.Body
            switch status {
            case .succeeded: body = .runSucceeded(FlowRunSucceeded(output: ["ok": true]))
            case .failed: body = .runFailed(FlowRunFailed(error: RunError(code: "boom", message: "no")))
            case .cancelled: body = .runCancelled(FlowRunCancelled(actor: "t"))
            case .running, .pending:
                body = .runRedriven(FlowRunRedriven(actor: "t", from_step: "s", reset_steps: ["s"]))
            }
            add(
                LedgerEvent(
                    id: "\(run)-\(sequence)", type: body.type, time: "2026-11-24T00:00:00.000Z", runid: run, body: body)
            )
        }

        mutating func add(_ event: LedgerEvent) { events.append((sequence + 1, event)) }
    }

    /// A deterministic generator (the same runs on every run of the test).
    struct Numbers {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    static let flows = ["alpha", "beta", "gamma", "delta", "epsilon"]
    static let statuses: [RunStatus] = [.pending, .running, .succeeded, .failed, .cancelled]

    /// `count` runs of five flows, created at 300 distinct times (so many share one and are ordered by id), some
    /// with a time without milliseconds (ordered as `String`s order them); then about half finish and some of the
    /// failed ones are redriven (back to `RUNNING`) in later events.
    static func manyRuns(_ count: Int) -> Log {
        var numbers = Numbers(state: 20)
        var log = Log()
        for i in 0..<count {
            let second = numbers.next(300)
            let time =
                numbers.next(10) == 0
                ? String(format: "2026-11-23T10:%02d:%02dZ", second / 60, second % 60)
                : String(format: "2026-11-23T10:%02d:%02d.000Z", second / 60, second % 60)
            log.start(
                String(format: "run-%05d", numbers.next(1_000_000)) + "-\(i)", flow: flows[numbers.next(5)], at: time)
        }
        let ids = log.events.map { $0.event.runid! }
        for id in ids {
            switch numbers.next(6) {
            case 0, 1: log.finish(id, as: .succeeded)
            case 2: log.finish(id, as: .failed)
            case 3: log.finish(id, as: .cancelled)
            default: break
            }
        }
        for case (_, let event) in log.events {
            if case .runFailed = event.body, numbers.next(2) == 0 { log.finish(event.runid!, as: .running) }
        }
        return log
    }

    /// Applies `log` in batches of `batch` events.
    static func apply(_ log: Log, to store: ReadModelStore, batch: Int) async throws {
        var start = 0
        while start < log.events.count {
            let slice = Array(log.events[start..<min(start + batch, log.events.count)])
            try await store.apply(slice, through: slice.last!.sequence)
            start += batch
        }
    }

    /// What the listing answered before its indexes: every run, filtered, sorted, cut.
    static func expected(_ all: [RunState], flowID: String?, status: String?, limit: Int) -> [String] {
        Array(
            all.filter { flowID == nil || $0.flow_id == flowID! }
                .filter { status == nil || $0.status.rawValue == status! }
                .sorted { ($0.created_at, $0.run_id) > ($1.created_at, $1.run_id) }
                .prefix(limit)
                .map(\.run_id))
    }

    /// The ids the store lists (through the stored JSON, as the API reads it).
    static func listed(_ store: ReadModelStore, flowID: String?, status: String?, limit: Int) throws -> [String] {
        try store.withRunsJSON(flowID: flowID, status: status, limit: limit) { runs in
            try runs.map { raw -> String in
                guard case .string(let id)? = try JSONTree.parse(raw)["run_id"] else { return "?" }
                return id
            }
        }
    }

    @Test func manyRunsOfSeveralFlowsAndStatusesAreListedNewestFirst() async throws {
        let directory = TemporaryDirectory("listing")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 28)
        let log = Self.manyRuns(3000)
        try await Self.apply(log, to: store, batch: 250)
        let all = try store.all(RunStatusModel.self)
        #expect(all.count == 3000)
        for status in Self.statuses where status != .pending {
            #expect(all.contains { $0.status == status }, "some run is \(status)")
        }
        #expect(all.contains { $0.redrives > 0 && $0.status == .running }, "some run failed and was redriven")
        let statuses: [String?] = [nil] + Self.statuses.map(\.rawValue) + ["BOGUS", "running", ""]
        let flows: [String?] = [nil] + Self.flows + ["nope", "", "alph"]
        for flowID in flows {
            for status in statuses {
                for limit in [1, 7, 50, 1000] {
                    let want = Self.expected(all, flowID: flowID, status: status, limit: limit)
                    let got = try Self.listed(store, flowID: flowID, status: status, limit: limit)
                    #expect(got == want, "flow \(flowID ?? "-") status \(status ?? "-") limit \(limit)")
                }
            }
        }
        // Every run of a status, and no run of another (a redriven run is listed as RUNNING only).
        for status in Self.statuses {
            let listed = try Self.listed(store, flowID: nil, status: status.rawValue, limit: 10_000)
            #expect(Set(listed) == Set(all.filter { $0.status == status }.map(\.run_id)), "\(status)")
        }
        // One entry per run in each listing index: nothing stale.
        let dump = try store.dump()
        for table in [RunListing.byTime, RunListing.byFlow, RunListing.byStatus, RunListing.byFlowStatus] {
            #expect(dump[table]?.count == 3000, "\(table)")
        }
        // The decoding listing answers the same runs.
        let decoded = try store.runs(flowID: "beta", status: "SUCCEEDED", limit: 20)
        #expect(decoded.map(\.run_id) == Self.expected(all, flowID: "beta", status: "SUCCEEDED", limit: 20))
        #expect(try store.runs(flowID: nil, status: nil, limit: 0).isEmpty)
        #expect(try store.runs(flowID: nil, status: nil, limit: -3).isEmpty)
    }

    @Test func aRunChangingStatusMovesBetweenStatusEntries() async throws {
        let directory = TemporaryDirectory("listing-moves")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 26)
        var log = Log()
        log.start("r1", flow: "f", at: "2026-11-23T10:00:01.000Z")
        log.start("r2", flow: "f", at: "2026-11-23T10:00:02.000Z")
        try await store.apply(log.events, through: log.sequence)
        #expect(try Self.listed(store, flowID: "f", status: "RUNNING", limit: 10) == ["r2", "r1"])

        var next = log
        next.finish("r1", as: .succeeded)
        try await store.apply([next.events.last!], through: next.sequence)
        #expect(try Self.listed(store, flowID: nil, status: "RUNNING", limit: 10) == ["r2"])
        #expect(try Self.listed(store, flowID: "f", status: "RUNNING", limit: 10) == ["r2"])
        #expect(try Self.listed(store, flowID: nil, status: "SUCCEEDED", limit: 10) == ["r1"])
        #expect(try Self.listed(store, flowID: "f", status: "SUCCEEDED", limit: 10) == ["r1"])
        #expect(try Self.listed(store, flowID: "f", status: nil, limit: 10) == ["r2", "r1"])

        // Failed, then redriven in the same batch: listed as RUNNING only.
        next.finish("r2", as: .failed)
        next.finish("r2", as: .running)
        try await store.apply(Array(next.events.suffix(2)), through: next.sequence)
        #expect(try Self.listed(store, flowID: nil, status: "RUNNING", limit: 10) == ["r2"])
        #expect(try Self.listed(store, flowID: nil, status: "FAILED", limit: 10) == [])
        let dump = try store.dump()
        #expect(dump[RunListing.byStatus]?.count == 2)
        #expect(dump[RunListing.byFlowStatus]?.count == 2)
    }

    @Test func theListingIsTheStoredJSONAsTheEncoderWroteIt() async throws {
        let directory = TemporaryDirectory("listing-json")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 26)
        try await Self.apply(Self.manyRuns(40), to: store, batch: 7)
        let runs = try store.runs(flowID: nil, status: nil, limit: 25)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let before = Array(try encoder.encode(["runs": runs]))
        // As RunsController assembles its answer.
        let now = try store.withRunsJSON(flowID: nil, status: nil, limit: 25) { runs in
            var out = Array("{\"runs\":[".utf8)
            for (index, run) in runs.enumerated() {
                if index > 0 { out += Array(",".utf8) }
                out += Array(run)
            }
            return out + Array("]}".utf8)
        }
        #expect(String(decoding: now, as: UTF8.self) == String(decoding: before, as: UTF8.self))
    }

    @Test func aBatchAtATimeOrAnEventAtATimeWritesTheSameTables() async throws {
        let log = Self.manyRuns(300)
        let one = TemporaryDirectory("listing-one")
        let many = TemporaryDirectory("listing-many")
        let a = try ReadModelStore(path: one.path, durability: .noSync, mapSize: 1 << 26)
        let b = try ReadModelStore(path: many.path, durability: .noSync, mapSize: 1 << 26)
        try await Self.apply(log, to: a, batch: 1)
        try await Self.apply(log, to: b, batch: 128)
        let dump = try a.dump()
        for table in [RunListing.byTime, RunListing.byFlow, RunListing.byStatus, RunListing.byFlowStatus] {
            #expect(dump.keys.contains(table))
        }
        #expect(String(decoding: dump[ReadModelTables.meta]?.first?.key ?? [], as: UTF8.self) == "checkpoint")
        #expect(
            dump[ReadModelTables.meta]?.map { String(decoding: $0.key + [61] + $0.value, as: UTF8.self) }
                == ["checkpoint=\(log.sequence)", "index_version=\(ReadModelTables.indexVersion) \(log.sequence)"])
        try expectSameModels(dump, try b.dump())
    }

    /// Flow ids no valid flow has: with 0x00, `|`, 0x01 first, longer than a key holds, and two spellings of one
    /// text (`String` equality is canonical equivalence); times with 0x00 and longer than a key holds.
    @Test func hostileFlowIdsAndTimesAreListedAsSortingAndComparingTextsDid() async throws {
        let directory = TemporaryDirectory("listing-hostile")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 26)
        let long = String(repeating: "x", count: 1000)
        let flows = [
            "a", "a\u{0}b", "a\u{0}", "ab", "a|b", "a|", "\u{1}a", long, long + "y", "\u{E9}", "e\u{301}", "K",
            "\u{212A}",
            "",
        ]
        let times = [
            "2026-11-23T10:00:00.000Z", "2026-11-23T10:00:00.000Z\u{0}", "2026-11-23T10:00:00.000Z\u{0}\u{0}",
            "2026-11-23T10:00:00.000", String(repeating: "9", count: 600), "\u{E9}", "e\u{301}x",
        ]
        var log = Log()
        var n = 0
        for flow in flows {
            for time in times {
                n += 1
                log.start("h\(n)", flow: flow, at: time)
            }
        }
        log.finish("h3", as: .failed)
        try await store.apply(log.events, through: log.sequence)
        let all = try store.all(RunStatusModel.self)
        #expect(all.count == flows.count * times.count, "no run was refused for its key")
        for flowID in flows + ["a\u{0}\u{1}", "x", String(repeating: "x", count: 100_000)] {
            for status in [nil, "RUNNING", "FAILED"] {
                let want = Self.expected(all, flowID: flowID, status: status, limit: 1000)
                    .filter { id in
                        // Times longer than a key holds are ordered by their first bytes: leave them out here.
                        all.first { $0.run_id == id }!.created_at.utf8.count < 160
                    }
                let got = try Self.listed(store, flowID: flowID, status: status, limit: 1000).filter { id in
                    all.first { $0.run_id == id }!.created_at.utf8.count < 160
                }
                #expect(got == want, "flow \(flowID.debugDescription.prefix(40)) status \(status ?? "-")")
            }
        }
        #expect(try Self.listed(store, flowID: "e\u{301}", status: nil, limit: 100).count == 2 * times.count)
    }

    /// Read models written before the listing's indexes (no index tables, no version): listed right from the
    /// `runs` table until the indexes are derived, which makes them what a replay writes.
    @Test func aStoreWrittenBeforeTheIndexesIsListedRightAndGetsThem() async throws {
        let log = Self.manyRuns(500)
        let current = TemporaryDirectory("listing-current")
        let reference = try ReadModelStore(path: current.path, durability: .noSync, mapSize: 1 << 27)
        try await Self.apply(log, to: reference, batch: 100)
        let all = try reference.all(RunStatusModel.self)
        let complete = try reference.dump()
        let old = ReadModelTables.all.filter { !$0.hasPrefix("runs_by_") }
        #expect(old.count == ReadModelTables.all.count - 4)

        /// A directory holding what an older version wrote: the older tables only, no index version.
        func olderStore(_ name: String) throws -> TemporaryDirectory {
            let directory = TemporaryDirectory(name)
            let environment = try LMDBEnvironment(
                path: directory.path, tables: old, mapSize: 1 << 27, durability: .noSync)
            try environment.writer.writeSynchronously { txn in
                for table in old {
                    for row in complete[table] ?? [] where row.key != Array(ReadModelTables.indexVersionKey.utf8) {
                        try txn.put(environment.table(table), key: row.key, value: row.value)
                    }
                }
            }
            return directory
        }

        // Derived when the projector starts.
        let first = try olderStore("listing-old")
        do {
            let store = try ReadModelStore(path: first.path, durability: .noSync, mapSize: 1 << 27)
            #expect(try store.indexesNeedUpgrade())
            #expect(try store.dump()[RunListing.byTime]?.isEmpty == true)
            let queries: [(String?, String?)] = [(nil, nil), ("beta", nil), (nil, "FAILED"), ("gamma", "RUNNING")]
            for (flowID, status) in queries {
                #expect(
                    try Self.listed(store, flowID: flowID, status: status, limit: 30)
                        == Self.expected(all, flowID: flowID, status: status, limit: 30))
            }
            try await store.upgradeIndexes()
            #expect(try !store.indexesNeedUpgrade())
            try expectSameModels(try store.dump(), complete)
            #expect(
                try Self.listed(store, flowID: "beta", status: "FAILED", limit: 30)
                    == Self.expected(all, flowID: "beta", status: "FAILED", limit: 30))
        }

        // Or by the next batch, stale entries and all.
        let second = try olderStore("listing-old-batch")
        var more = log
        more.start("zz-new", flow: "beta", at: "2026-11-23T11:00:00.000Z")
        try await reference.apply([more.events.last!], through: more.sequence)
        do {
            let store = try ReadModelStore(path: second.path, durability: .noSync, mapSize: 1 << 27)
            try await store.environment.writer.write { txn in
                try txn.put(store.environment.table(RunListing.byTime), key: [0x7F], value: Array("gone".utf8))
                try txn.put(store.environment.table(RunStatusModel.activeTable), key: Array("gone".utf8), value: [])
            }
            try await store.apply([more.events.last!], through: more.sequence)
            try expectSameModels(try store.dump(), try reference.dump())
            #expect(try Self.listed(store, flowID: "beta", status: nil, limit: 1) == ["zz-new"])
        }
    }

    /// Models this version indexed, which a version without the indexes then moved on (a downgrade), and this
    /// version opens again: the stale indexes are not trusted, and are derived again.
    @Test func indexesAVersionWithoutThemLeftBehindAreDerivedAgain() async throws {
        let log = Self.manyRuns(400)
        let half = Array(log.events.prefix(300))
        let reference = TemporaryDirectory("listing-downgrade-ref")
        let complete = try ReadModelStore(path: reference.path, durability: .noSync, mapSize: 1 << 27)
        try await Self.apply(log, to: complete, batch: 50)
        let all = try complete.all(RunStatusModel.self)
        let directory = TemporaryDirectory("listing-downgrade")
        do {
            let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 27)
            try await store.apply(half, through: half.last!.sequence)
            #expect(try !store.indexesNeedUpgrade())
            // The older version writes the tables it knows (the models and the checkpoint), not the indexes.
            let older = ReadModelTables.all.filter { !$0.hasPrefix("runs_by_") }
            try await store.environment.writer.write { txn in
                for table in older {
                    for row in try complete.dump()[table] ?? []
                    where row.key != Array(ReadModelTables.indexVersionKey.utf8) {
                        try txn.put(store.environment.table(table), key: row.key, value: row.value)
                    }
                }
            }
        }
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 27)
        #expect(try store.indexesNeedUpgrade())
        for (flowID, status) in [(nil, nil), ("beta", nil), (nil, "SUCCEEDED"), ("alpha", "CANCELLED")] {
            #expect(
                try Self.listed(store, flowID: flowID, status: status, limit: 500)
                    == Self.expected(all, flowID: flowID, status: status, limit: 500))
        }
        #expect(try await store.upgradeIndexes() == [])
        try expectSameModels(try store.dump(), try complete.dump())
    }

    /// A stored state that cannot be read (damaged models) is named, with what to do, and never stops the upgrade
    /// of the indexes or the listing; a batch that must fold it says the same.
    @Test func anUnreadableStoredStateIsNamedAndLeftOut() async throws {
        let log = Self.manyRuns(50)
        let directory = TemporaryDirectory("listing-unreadable")
        let store = try ReadModelStore(path: directory.path, durability: .noSync, mapSize: 1 << 26)
        try await Self.apply(log, to: store, batch: 10)
        let runs = store.environment.table(RunStatusModel.table)
        let meta = store.environment.table(ReadModelTables.meta)
        try await store.environment.writer.write { txn in
            try txn.put(runs, key: Array("broken".utf8), value: Array(#"{"run_id":"broken","status":"#.utf8))
            try txn.put(runs, key: Array("odd".utf8), value: Array(#"{"run_id":7}"#.utf8))
            try txn.delete(meta, key: Array(ReadModelTables.indexVersionKey.utf8))
        }
        let all = try Set(log.events.compactMap { $0.event.runid }).compactMap { try store.run($0) }
        #expect(
            try Self.listed(store, flowID: nil, status: nil, limit: 100)
                == Self.expected(all, flowID: nil, status: nil, limit: 100))
        let unreadable = try await store.upgradeIndexes()
        #expect(unreadable.map(\.key) == ["broken", "odd"])
        #expect(unreadable.allSatisfy { $0.table == RunStatusModel.table })
        #expect(unreadable.last?.description.contains("run_id: expected a string, found 7") == true)
        #expect(unreadable.first?.description.contains("ledgerflow projections rebuild") == true)
        #expect(
            try Self.listed(store, flowID: nil, status: nil, limit: 100)
                == Self.expected(all, flowID: nil, status: nil, limit: 100))
        var more = Log()
        more.events = [
            (
                log.sequence + 1,
                LedgerEvent(
                    id: "x", type: EventType.runCancelled, time: "t", runid: "broken",
                    body: .runCancelled(FlowRunCancelled(actor: "t")))
            )
        ]
        do {
            try await store.apply(more.events, through: more.sequence)
            Issue.record("folded an event into a state it could not read")
        } catch let error as ReadModelStore.UnreadableState {
            #expect(error.key == "broken")
            #expect(error.description.contains("ledgerflow projections rebuild"))
        }
        #expect(try store.checkpoint() == log.sequence)
    }

    @Test func aBackwardScanOfAPrefixStaysInsideIt() throws {
        let directory = TemporaryDirectory("scan-prefix")
        let environment = try LMDBEnvironment(path: directory.path, tables: ["t"], mapSize: 1 << 20)
        let table = environment.table("t")
        let keys: [[UInt8]] = [
            [0], [0, 0], [1], [1, 0], [1, 0xFF], [1, 0xFF, 0], [1, 0xFF, 0xFF], [2], [2, 1], [0xFF], [0xFF, 0xFF],
        ]
        try environment.writer.writeSynchronously { txn in
            for key in keys { try txn.put(table, key: key, value: key) }
        }
        func scan(_ prefix: [UInt8], limit: Int = 100) throws -> [[UInt8]] {
            try environment.read { txn in
                var out: [[UInt8]] = []
                try txn.scanBackward(table, prefix: prefix) { key, value in
                    #expect(Array(key) == Array(value))
                    out.append(Array(key))
                    return out.count < limit
                }
                return out
            }
        }
        for prefix: [UInt8] in [
            [], [0], [1], [1, 0xFF], [1, 0xFF, 0xFF], [2], [2, 1], [3], [0xFF], [0xFF, 0xFF], [0xFE],
        ] {
            #expect(try scan(prefix) == keys.filter { $0.starts(with: prefix) }.reversed(), "\(prefix)")
        }
        #expect(try scan([1], limit: 2) == [[1, 0xFF, 0xFF], [1, 0xFF, 0]])
    }
}

extension Integration {
    /// The listing over HTTP, on runs of the real engine: the answer is the runs as the encoder writes them, odd
    /// query values list nothing, and a replay of the log writes the same index tables.
    @Suite struct RunListingHTTPTests {
        @Test func theListingAnswersOverHTTPAndARebuildWritesTheSameIndexes() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                for i in 0..<4 { try stack.publishCommand(id: "list-\(i)", title: "T\(i)") }
                let runs = try await stack.waitForRuns(4)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                let sorted = runs.sorted { ($0.created_at, $0.run_id) > ($1.created_at, $1.run_id) }
                let (status, text) = try await stack.client.text("GET", "/automation/runs?limit=3")
                #expect(status == 200)
                #expect(text == String(decoding: try encoder.encode(["runs": Array(sorted.prefix(3))]), as: UTF8.self))
                let flow = "calendar-create-event"
                let (_, byFlow) = try await stack.http("GET", "/automation/runs?flow_id=\(flow)&status=SUCCEEDED")
                #expect(byFlow[path: "runs.0.run_id"] == .string(sorted[0].run_id))
                for query in [
                    "status=BOGUS", "status=RUNNING", "flow_id=nope", "flow_id=a%00b", "flow_id=%FF%FE",
                    "flow_id=a%7Cb&status=SUCCEEDED", "flow_id=" + String(repeating: "x", count: 4000),
                    "status=%00", "flow_id=\(flow)%00",
                ] {
                    let (status, text) = try await stack.client.text("GET", "/automation/runs?\(query)")
                    #expect(status == 200, "\(query.prefix(60))")
                    #expect(text == "{\"runs\":[]}", "\(query.prefix(60))")
                }
                for (query, count) in [("limit=0", 1), ("limit=-5", 1), ("limit=abc", 4), ("limit=1e99", 4)] {
                    let (_, json) = try await stack.http("GET", "/automation/runs?\(query)")
                    #expect(json["runs"]?.arrayValue?.count == count, "\(query)")
                }
                try await stack.expectRebuildEqualsLive()
            }
        }
    }
}
