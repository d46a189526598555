public import Foundation

/// A parsed five-field cron expression (minute hour day-of-month month day-of-week), with Vixie cron's rule for
/// the two day fields: when both are restricted (neither starts with `*`), a day matches when either matches.
public struct CronExpression: Sendable, Equatable {
    public let minutes: [Int]
    public let hours: [Int]
    let daysOfMonth: Set<Int>
    let months: Set<Int>
    /// 0 = Sunday ... 6 = Saturday (7 is read as 0).
    let daysOfWeek: Set<Int>
    let domRestricted: Bool
    let dowRestricted: Bool

    /// Parses `text`, or throws `CronProblem` saying what is wrong (naming the field). Never traps; bounded work.
    public init(_ text: String) throws(CronProblem) {
        if let problem = CronCheck.problem(text) { throw CronProblem(message: problem) }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        var sets: [Set<Int>] = []
        for (part, field) in zip(parts, CronCheck.fields) {
            sets.append(Self.values(part, range: field.range, names: field.names))
        }
        minutes = sets[0].sorted()
        hours = sets[1].sorted()
        daysOfMonth = sets[2]
        months = sets[3]
        daysOfWeek = Set(sets[4].map { $0 == 7 ? 0 : $0 })
        domRestricted = !parts[2].hasPrefix("*")
        dowRestricted = !parts[4].hasPrefix("*")
        if domRestricted, !dowRestricted {
            // Days of month that no chosen month has (Feb 30, Apr 31): the expression would never fire.
            let longest = months.map { Self.maxDays(month: $0) }.max() ?? 31
            if let first = daysOfMonth.min(), first > longest {
                throw CronProblem(
                    message:
                        "\"\(text)\" never fires: no chosen month has day \(first) (the longest has \(longest) days)")
            }
        }
    }

    static func maxDays(month: Int) -> Int {
        switch month {
        case 2: return 29
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// The values of one (already checked) field.
    static func values(_ field: Substring, range: ClosedRange<Int>, names: [String: Int]) -> Set<Int> {
        var out: Set<Int> = []
        for item in field.split(separator: ",") {
            let halves = item.split(separator: "/", maxSplits: 1)
            let step = halves.count == 2 ? (CronCheck.number(halves[1]) ?? 1) : 1
            var low = range.lowerBound
            var high = range.upperBound
            if halves[0] != "*" {
                let bounds = halves[0].split(separator: "-").map { CronCheck.number($0) ?? names[$0.uppercased()] ?? 0 }
                low = bounds[0]
                // `5/15` means 5 through the end of the range in steps of 15, as in Vixie cron.
                high = bounds.count == 2 ? bounds[1] : (halves.count == 2 ? range.upperBound : bounds[0])
            }
            var value = low
            while value <= high {
                out.insert(value)
                value += max(step, 1)
            }
        }
        return out
    }

    /// Whether the civil day matches the month and the day fields.
    func matches(year: Int, month: Int, day: Int, weekday: Int) -> Bool {
        guard months.contains(month) else { return false }
        let dom = daysOfMonth.contains(day)
        let dow = daysOfWeek.contains(weekday)
        // Vixie cron: either day field may match when both are restricted; otherwise both must (a field starting
        // with `*`, such as `*/2`, still restricts its values).
        return domRestricted && dowRestricted ? dom || dow : dom && dow
    }
}

/// What is wrong with a cron expression or a schedule, in words a person can act on.
public struct CronProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// When a schedule fires: a cron expression in an IANA time zone, or a fixed interval.
///
/// Daylight saving: a local time that does not exist (spring forward) fires once, at the first valid instant after
/// it (the transition); a local time that occurs twice (fall back) fires once, at its first occurrence. Interval
/// schedules fire at whole multiples of the interval since the Unix epoch (UTC), so every scheduler computes the
/// same nominal times.
public enum ScheduleSpec: Sendable, Equatable {
    case cron(CronExpression, TimeZone)
    case interval(milliseconds: Int64)

    /// The shortest interval accepted.
    public static let minimumIntervalMillis: Int64 = 1000
    /// How many firings a preview or a backfill lists at most.
    public static let maxCount = 1000
    /// How far ahead `next` looks for a cron day before saying the expression never fires (covers Feb 29).
    static let searchDays = 366 * 9

    /// The schedule of a cron expression in `timezone` (default UTC).
    public static func cron(_ text: String, timezone: String?) throws(CronProblem) -> ScheduleSpec {
        let expression = try CronExpression(text)
        return .cron(expression, try zone(timezone))
    }

    /// The IANA time zone named `name` (nil: UTC), or what is wrong with the name.
    public static func zone(_ name: String?) throws(CronProblem) -> TimeZone {
        guard let name else { return TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0)! }
        guard name.utf8.count <= 64, let zone = TimeZone(identifier: name) else {
            throw CronProblem(
                message:
                    "\"\(name.prefix(64))\" is not a time zone of the IANA database (such as Europe/Madrid, America/New_York or UTC)"
            )
        }
        return zone
    }

    /// The schedule of an interval text (`15m`): at least 1 s.
    public static func interval(_ text: String) throws(CronProblem) -> ScheduleSpec {
        switch DurationText.parse(text) {
        case .failure(let failure): throw CronProblem(message: failure.message)
        case .success(let seconds):
            let millis = Int64((seconds * 1000).rounded())
            guard millis >= minimumIntervalMillis else {
                throw CronProblem(message: "\"\(text)\" is shorter than the shortest interval, 1s")
            }
            return .interval(milliseconds: millis)
        }
    }

    /// The schedule of a flow trigger, nil when the trigger is not a schedule.
    public static func of(_ trigger: FlowTrigger?) throws(CronProblem) -> ScheduleSpec? {
        guard let trigger else { return nil }
        if let cron = trigger.cron { return try .cron(cron, timezone: trigger.timezone) }
        if let interval = trigger.interval { return try .interval(interval) }
        return nil
    }

    /// The first firing strictly after `date`, nil when there is none within nine years (a cron that never fires).
    public func next(after date: Date) -> Date? {
        switch self {
        case .interval(let step):
            let millis = Self.millis(date)
            return Self.date(millis: (millis.floorDiv(step) + 1) * step)
        case .cron(let expression, let zone):
            return Self.nextCron(expression, zone, after: date)
        }
    }

    /// Up to `limit` firings after `date` and at or before `through`, in order.
    public func firings(after date: Date, through: Date, limit: Int) -> [Date] {
        var out: [Date] = []
        var cursor = date
        while out.count < limit, let next = next(after: cursor), next <= through {
            out.append(next)
            cursor = next
        }
        return out
    }

    /// How many firings lie after `date` and at or before `through`, and the last of them, without listing them:
    /// an interval by arithmetic, a cron day by day (a day without a daylight-saving transition that lies wholly in
    /// the range counts as hours × minutes; other days are counted firing by firing). Exactly the firings `firings`
    /// would list; the work grows with the days in the range, not with the firings.
    public func tally(after date: Date, through: Date) -> (count: Int, last: Date?) {
        guard through > date else { return (0, nil) }
        switch self {
        case .interval(let step):
            let last = Self.millis(through).floorDiv(step)
            let count = last - Self.millis(date).floorDiv(step)
            return count > 0 ? (Int(count), Self.date(millis: last * step)) : (0, nil)
        case .cron(let e, let zone):
            let from = Int64(date.timeIntervalSince1970.rounded(.down))
            let to = Int64(through.timeIntervalSince1970.rounded(.down))
            func local(_ t: Int64) -> Int64 {
                t + Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(t))))
            }
            // A day either side: local days and instants are offset by hours at most.
            var day = local(from).floorDiv(86_400) - 1
            let lastDay = min(local(to).floorDiv(86_400) + 1, day + 366 * 400)
            let minutes = e.hours.flatMap { hour in e.minutes.map { hour * 60 + $0 } }
            guard let earliest = minutes.first, let latest = minutes.last else { return (0, nil) }
            var count = 0
            var last: Int64?
            while day <= lastDay {
                let (y, m, d) = Civil.date(fromDays: day)
                if e.matches(year: y, month: m, day: d, weekday: Int((day + 4).floorMod(7))) {
                    let first = Self.instantOf(day: day, minute: earliest, zone)
                    let final = Self.instantOf(day: day, minute: latest, zone)
                    if first > from, final <= to, final - first == Int64(latest - earliest) * 60 {
                        count += minutes.count
                        last = final
                    } else {
                        let inRange = Set(minutes.map { Self.instantOf(day: day, minute: $0, zone) })
                            .filter { $0 > from && $0 <= to }
                        count += inRange.count
                        if let top = inRange.max() { last = max(last ?? top, top) }
                    }
                }
                day += 1
            }
            return (count, last.map { Date(timeIntervalSince1970: Double($0)) })
        }
    }

    /// The next `count` firings after `date` (at most `maxCount`).
    public func preview(after date: Date, count: Int) -> [Date] {
        firings(after: date, through: .distantFuture, limit: min(max(count, 0), Self.maxCount))
    }

    public static func millis(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded(.down)
        return Int64(max(min(value, 9e15), -9e15))
    }

    public static func date(millis: Int64) -> Date { Date(timeIntervalSince1970: Double(millis) / 1000) }

    static func nextCron(_ e: CronExpression, _ zone: TimeZone, after date: Date) -> Date? {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let offset = Int64(zone.secondsFromGMT(for: date))
        let localSeconds = seconds + offset
        var day = localSeconds.floorDiv(86_400)
        let firstDayMinute = Int((localSeconds - day * 86_400) / 60)
        for index in 0..<searchDays {
            let (y, m, d) = Civil.date(fromDays: day)
            let weekday = Int((day + 4).floorMod(7))  // 1970-01-01 was a Thursday
            if e.matches(year: y, month: m, day: d, weekday: weekday) {
                for hour in e.hours {
                    for minute in e.minutes {
                        // On the first day, times well before `date` cannot follow it (offsets move by hours at most).
                        if index == 0, hour * 60 + minute < firstDayMinute - 240 { continue }
                        let instant = instantOf(day: day, minute: hour * 60 + minute, zone)
                        if instant > seconds { return Date(timeIntervalSince1970: Double(instant)) }
                    }
                }
            }
            day += 1
        }
        return nil
    }

    /// The instant (Unix seconds) of a local wall time: its first occurrence when it occurs twice, the first valid
    /// instant after it when it does not exist.
    static func instantOf(day: Int64, minute: Int, _ zone: TimeZone) -> Int64 {
        let naive = day * 86_400 + Int64(minute) * 60
        func offset(_ t: Int64) -> Int64 { Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(t)))) }
        let candidates = Set([offset(naive - 86_400), offset(naive), offset(naive + 86_400)])
        let valid = candidates.map { naive - $0 }.filter { offset($0) == naive - $0 }
        if let first = valid.min() { return first }
        // A gap: the wall time falls between two offsets. The transition lies between the instants the two
        // offsets give; it is the first valid instant after the missing time.
        var low = naive - (candidates.max() ?? 0)
        var high = naive - (candidates.min() ?? 0)
        let before = offset(low)
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if offset(mid) == before { low = mid } else { high = mid }
        }
        return high
    }
}

/// Proleptic Gregorian civil dates from day numbers (days since 1970-01-01), without a Calendar.
enum Civil {
    static func date(fromDays z0: Int64) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = z.floorDiv(146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(m <= 2 ? y + 1 : y), Int(m), Int(d))
    }
}

extension Int64 {
    func floorDiv(_ d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
    func floorMod(_ d: Int64) -> Int64 { self - floorDiv(d) * d }
}

/// RFC 3339 with the zone's offset (`2026-03-29T03:00:00+02:00`), as previews print firings.
public enum RFC3339 {
    public static func string(_ date: Date, in zone: TimeZone) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let offset = Int64(zone.secondsFromGMT(for: date))
        let local = seconds + offset
        let day = local.floorDiv(86_400)
        let (y, m, d) = Civil.date(fromDays: day)
        let rest = local - day * 86_400
        let sign = offset < 0 ? "-" : "+"
        let abs = Swift.abs(offset)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let zoneText = offset == 0 ? "Z" : "\(sign)\(two(abs / 3600)):\(two(abs % 3600 / 60))"
        let year = String(y).count < 4 ? String(repeating: "0", count: 4 - String(y).count) + String(y) : String(y)
        return
            "\(year)-\(two(Int64(m)))-\(two(Int64(d)))T\(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60))\(zoneText)"
    }

    /// Parses an RFC 3339 time with its offset (`Z` or `±hh:mm`), fractions allowed; nil otherwise.
    public static func parse(_ text: String) -> Date? {
        guard text.utf8.count <= 40 else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
