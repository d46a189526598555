import Foundation
import LedgerCore
import Testing

@Suite struct CronScheduleTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var cron: String
        var zone: String
        var from: String
        var expected: [String]
        var testDescription: String { "\(cron) in \(zone) from \(from)" }
    }

    /// Next firings, including both daylight-saving transitions in two time zones and Vixie's day rule.
    static let cases: [Case] = [
        // Europe/Madrid, spring forward (2026-03-29 02:00 CET -> 03:00 CEST): 02:30 does not exist, fires at 03:00.
        Case(
            cron: "30 2 * * *", zone: "Europe/Madrid", from: "2026-03-28T12:00:00Z",
            expected: ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        // Several missing times fire once, at the first valid instant after them.
        Case(
            cron: "*/30 * * * *", zone: "Europe/Madrid", from: "2026-03-29T00:00:00+01:00",
            expected: [
                "2026-03-29T00:30:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00",
            ]),
        // Europe/Madrid, fall back (2026-10-25 03:00 CEST -> 02:00 CET): 02:30 occurs twice, fires at the first.
        Case(
            cron: "30 2 * * *", zone: "Europe/Madrid", from: "2026-10-24T12:00:00Z",
            expected: ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        Case(
            cron: "0 * * * *", zone: "Europe/Madrid", from: "2026-10-25T01:00:00+02:00",
            expected: ["2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00"]),
        // America/New_York, spring forward (2026-03-08 02:00 EST -> 03:00 EDT).
        Case(
            cron: "30 2 * * *", zone: "America/New_York", from: "2026-03-07T12:00:00Z",
            expected: ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        // America/New_York, fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 fires once, at its first.
        Case(
            cron: "30 1 * * *", zone: "America/New_York", from: "2026-10-31T12:00:00Z",
            expected: ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        Case(
            cron: "0 * * * *", zone: "America/New_York", from: "2026-11-01T00:00:00-04:00",
            expected: ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]),
        // Names and ranges: Monday to Friday at 9 in Madrid, from a Saturday.
        Case(
            cron: "0 9 * * MON-FRI", zone: "Europe/Madrid", from: "2026-06-06T00:00:00Z",
            expected: ["2026-06-08T09:00:00+02:00", "2026-06-09T09:00:00+02:00"]),
        // Both day fields restricted: the 13th or any Friday (Vixie cron).
        Case(
            cron: "0 0 13 * FRI", zone: "UTC", from: "2026-02-01T00:00:00Z",
            expected: ["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z", "2026-02-27T00:00:00Z"]),
        Case(
            cron: "0 0 1 * MON", zone: "UTC", from: "2026-05-30T00:00:00Z",
            expected: ["2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z"]),
        // Only the day of month restricted: that day only; `*/2` counts as unrestricted (both must match).
        Case(
            cron: "0 0 13 * *", zone: "UTC", from: "2026-02-01T00:00:00Z",
            expected: ["2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z"]),
        Case(
            cron: "0 0 */2 * FRI", zone: "UTC", from: "2026-02-01T00:00:00Z",
            expected: ["2026-02-13T00:00:00Z", "2026-02-27T00:00:00Z", "2026-03-13T00:00:00Z"]),
        // Steps, lists, months by name, leap days.
        Case(
            cron: "5,35 */6 * JAN,jul SUN", zone: "UTC", from: "2026-07-04T00:00:00Z",
            expected: ["2026-07-05T00:05:00Z", "2026-07-05T00:35:00Z", "2026-07-05T06:05:00Z"]),
        Case(cron: "0 0 29 2 *", zone: "UTC", from: "2026-01-01T00:00:00Z", expected: ["2028-02-29T00:00:00Z"]),
    ]

    @Test(arguments: cases)
    func nextFirings(_ c: Case) throws {
        let spec = try ScheduleSpec.cron(c.cron, timezone: c.zone)
        let zone = try ScheduleSpec.zone(c.zone)
        let from = try #require(RFC3339.parse(c.from))
        let firings = spec.preview(after: from, count: c.expected.count).map { RFC3339.string($0, in: zone) }
        #expect(firings == c.expected)
    }

    @Test func intervalsAreMultiplesOfTheIntervalSinceTheEpoch() throws {
        let spec = try ScheduleSpec.interval("15m")
        let from = try #require(RFC3339.parse("2026-01-01T00:07:00Z"))
        let utc = try ScheduleSpec.zone(nil)
        #expect(
            spec.preview(after: from, count: 2).map { RFC3339.string($0, in: utc) } == [
                "2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z",
            ])
    }

    @Test(arguments: [
        ("*/0 * * * *", "step"), ("1-1000 * * * *", "not a valid value"), ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"), ("0 0 * * 8", "not a valid value"), ("* * * *", "5 fields"),
        (Array(repeating: "1", count: 1000).joined(separator: ",") + " * * * *", "bytes long"),
        ("5-1 * * * *", "backwards"),
    ])
    func hostileCronIsRefused(_ cron: String, _ words: String) {
        #expect(throws: CronProblem.self) { _ = try ScheduleSpec.cron(cron, timezone: nil) }
        do {
            _ = try ScheduleSpec.cron(cron, timezone: nil)
        } catch {
            #expect(error.message.contains(words), "\(error.message)")
        }
    }

    @Test(arguments: ["0s", "500ms", "1000000h", "-1s", "fast", ""])
    func hostileIntervalIsRefused(_ text: String) {
        #expect(throws: CronProblem.self) { _ = try ScheduleSpec.interval(text) }
    }

    @Test func unknownZonesAreRefused() {
        #expect(throws: CronProblem.self) { _ = try ScheduleSpec.cron("0 9 * * *", timezone: "Mars/Olympus") }
        #expect(throws: CronProblem.self) { _ = try ScheduleSpec.zone(String(repeating: "A", count: 500)) }
    }

    @Test func previewsAreBoundedAndFarDatesWork() throws {
        let every = try ScheduleSpec.cron("* * * * *", timezone: "Europe/Madrid")
        #expect(every.preview(after: Date(), count: 1_000_000_000).count == ScheduleSpec.maxCount)
        let leap = try ScheduleSpec.cron("0 0 29 2 *", timezone: "UTC")
        let far = try #require(RFC3339.parse("2190-01-01T00:00:00Z"))
        #expect(leap.preview(after: far, count: 3).count == 3)
        let old = try #require(RFC3339.parse("1970-01-01T00:00:00Z"))
        #expect(every.preview(after: old, count: 2).count == 2)
    }

    @Test func triggerValidationNamesTheField() {
        func problems(_ trigger: JSONValue, runAs: String? = nil) -> [String] {
            var flow: [String: JSONValue] = [
                "id": "sched", "trigger": trigger,
                "steps": [["id": "a", "action": "transform", "with": ["value": 1]]],
            ]
            if let runAs { flow["run_as"] = .string(runAs) }
            switch FlowValidator.validate(.object(flow)) {
            case .success: return []
            case .failure(let failure): return failure.problems.map(\.path)
            }
        }
        #expect(problems(["cron": "0 9 * * MON-FRI", "timezone": "Europe/Madrid"]) == [])
        #expect(problems(["interval": "15m", "overlap": "buffer_one", "jitter": "30s", "catchup_window": "10m"]) == [])
        #expect(problems(["cron": "0 9 * * *", "timezone": "Nowhere/Land"]) == ["trigger.timezone"])
        #expect(problems(["interval": "0s"]) == ["trigger.interval"])
        #expect(problems(["interval": "1m", "jitter": "2m"]) == ["trigger.jitter"])
        #expect(problems(["interval": "1m", "overlap": "sometimes"]) == ["trigger.overlap"])
        #expect(problems(["interval": "1m", "catchup_window": "30d"]) == ["trigger.catchup_window"])
        #expect(problems(["event": "X", "overlap": "skip"]) == ["trigger.overlap"])
        #expect(problems(["interval": "1m"], runAs: "user") == ["trigger.on_behalf_of"])
        #expect(problems(["interval": "1m", "on_behalf_of": "u-1"], runAs: "user") == [])
        #expect(problems(["interval": "1m", "on_behalf_of": "u-1"], runAs: "service") == ["trigger.on_behalf_of"])
    }

    /// `tally` (an inactive period's firings, counted without listing them) agrees with listing them, across both
    /// daylight-saving transitions in two zones, partial first and last days, and intervals.
    @Test(arguments: [
        ("*/30 * * * *", "Europe/Madrid", "2026-03-28T13:17:00Z", "2026-03-30T08:00:00Z"),
        ("*/30 * * * *", "Europe/Madrid", "2026-10-24T22:05:00Z", "2026-10-26T01:00:00Z"),
        ("0 * * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
        ("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
        ("0 9 * * MON-FRI", "Europe/Madrid", "2026-01-01T00:00:00Z", "2026-05-01T09:00:00+02:00"),
        ("0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z", "2027-12-31T00:00:00Z"),
        ("* * * * *", "Europe/Madrid", "2026-06-01T10:00:30Z", "2026-06-02T03:00:00Z"),
        ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2033-01-01T00:00:00Z"),
    ])
    func tallyCountsWhatFiringsLists(cron: String, zone: String, from: String, to: String) throws {
        let spec = try ScheduleSpec.cron(cron, timezone: zone)
        let (start, end) = (try #require(RFC3339.parse(from)), try #require(RFC3339.parse(to)))
        let listed = spec.firings(after: start, through: end, limit: 100_000)
        let (count, last) = spec.tally(after: start, through: end)
        #expect(count == listed.count)
        #expect(last == listed.last)
        #expect(count > 0)
    }

    @Test func tallyOfAnIntervalIsArithmetic() throws {
        let spec = try ScheduleSpec.interval("15m")
        let start = try #require(RFC3339.parse("2026-01-01T00:07:00Z"))
        for hours: Double in [0, 0.1, 1, 24, 9600] {
            let end = start.addingTimeInterval(hours * 3600)
            let (count, last) = spec.tally(after: start, through: end)
            let listed = spec.firings(after: start, through: end, limit: 100_000)
            #expect(count == listed.count)
            #expect(last == listed.last)
        }
        // A firing exactly at `through` counts; one exactly at `after` does not.
        let onTheHour = try #require(RFC3339.parse("2026-01-01T00:00:00Z"))
        #expect(spec.tally(after: onTheHour, through: onTheHour.addingTimeInterval(1800)).count == 2)
    }
}
