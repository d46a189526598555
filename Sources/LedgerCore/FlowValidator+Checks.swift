import Foundation

/// The checks `FlowValidator.validate` is made of: retries, delays, triggers, templates, references, the DAG.
extension FlowValidator {
    static func expected(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type: return "a whole number"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }

    static func pathString(_ parts: [String]) -> String {
        var out = ""
        for part in parts {
            if part.hasPrefix("Index ") {
                out += "[\(part.dropFirst(6))]"
            } else {
                out += out.isEmpty ? part : ".\(part)"
            }
        }
        return out.isEmpty ? "$" : out
    }

    /// The definition without the `run_as` and `backoff` strings it does not know (each reported), so that decoding
    /// it finds every other problem.
    static func closedValues(_ root: [String: JSONValue], _ problem: (String, String) -> Void) -> JSONValue {
        func known<Value: RawRepresentable<String> & CaseIterable>(
            _ value: JSONValue?, _: Value.Type, at: String
        ) -> Bool {
            guard case .string(let text)? = value, Value(rawValue: text) == nil else { return true }
            let names = Value.allCases.map { "\"\($0.rawValue)\"" }
            problem(at, "use \(names.dropLast().joined(separator: ", ")) or \(names.last ?? "")")
            return false
        }
        func retryWithoutUnknownBackoff(_ retry: JSONValue?, at: String) -> JSONValue? {
            guard case .object(var fields)? = retry else { return retry }
            if !known(fields["backoff"], RetryPolicy.Backoff.self, at: "\(at).backoff") { fields["backoff"] = nil }
            return .object(fields)
        }
        var root = root
        if !known(root["run_as"], RunAs.self, at: "run_as") { root["run_as"] = nil }
        if case .object(var defaults)? = root["defaults"] {
            defaults["retry"] = retryWithoutUnknownBackoff(defaults["retry"], at: "defaults.retry")
            root["defaults"] = .object(defaults)
        }
        if case .array(var steps)? = root["steps"] {
            for i in steps.indices {
                guard case .object(var step) = steps[i] else { continue }
                step["retry"] = retryWithoutUnknownBackoff(step["retry"], at: "steps[\(i)].retry")
                steps[i] = .object(step)
            }
            root["steps"] = .array(steps)
        }
        return .object(root)
    }

    static let retryBounds: [(String, ClosedRange<Int>)] = [
        ("max_attempts", 1...Limits.maxAttempts), ("initial_ms", 0...Limits.retryDelayMillis),
        ("max_ms", 0...Limits.retryDelayMillis),
    ]

    static func checkRetry(_ retry: RetryPolicy, at: String, _ problem: (String, String) -> Void) {
        let values = [("max_attempts", retry.max_attempts), ("initial_ms", retry.initial_ms), ("max_ms", retry.max_ms)]
        for ((key, value), (_, range)) in zip(values, retryBounds) {
            if let value, !range.contains(value) {
                problem("\(at).\(key)", "must be from \(range.lowerBound) to \(range.upperBound), not \(value)")
            }
        }
        if let m = retry.max_ms, let i = retry.initial_ms, (0...Limits.retryDelayMillis).contains(m), m < i {
            problem("\(at).max_ms", "must be at least initial_ms (\(i))")
        }
    }

    /// A number of seconds: more than 0, at most `limit`.
    static func checkSeconds(_ seconds: Double, at: String, limit: Double, _ problem: (String, String) -> Void) {
        guard seconds.isFinite, seconds > 0, seconds <= limit else {
            problem(at, "must be more than 0 and at most \(Int(limit)) seconds (\(Int(limit) / 86_400) days)")
            return
        }
    }

    /// A `delay` step's literal duration (one written with a template is checked when it runs).
    static func checkDelay(_ with: [String: JSONValue], at: String, _ problem: (String, String) -> Void) {
        switch with["duration"] {
        case .string(let text)? where !text.contains("{{"):
            if case .failure(let failure) = DurationText.parse(text) { problem("\(at).duration", failure.message) }
        case nil, .null?, .string?:
            break
        default:
            problem("\(at).duration", "write a duration as a string, such as \"30s\"")
        }
        for (key, scale) in [("seconds", 1.0), ("ms", 0.001)] {
            if case .number(let n)? = with[key], !(n.isFinite && n >= 0 && n * scale <= Limits.runTimeoutSeconds) {
                problem("\(at).\(key)", "must be from 0 to \(Int(Limits.runTimeoutSeconds / scale)) (30 days)")
            }
        }
    }

    /// A string for a message: quoted, and shortened when long.
    static func quoted(_ text: String) -> String {
        text.count > 64 ? "\"\(text.prefix(64))...\"" : "\"\(text)\""
    }

    /// How deeply containers nest in `value` (0 for a scalar), without recursion.
    static func nestingDepth(_ value: JSONValue) -> Int {
        var deepest = 0
        var stack: [(JSONValue, Int)] = [(value, 0)]
        while let (current, depth) = stack.popLast() {
            switch current {
            case .array(let a):
                deepest = max(deepest, depth + 1)
                for v in a { stack.append((v, depth + 1)) }
            case .object(let o):
                deepest = max(deepest, depth + 1)
                for v in o.values { stack.append((v, depth + 1)) }
            default:
                break
            }
        }
        return deepest
    }

    /// Paths of NaN and infinite numbers (a parsed document has none, a value built in code may).
    static func nonFiniteNumbers(_ value: JSONValue, at path: String) -> [String] {
        switch value {
        case .number(let n): return n.isFinite ? [] : [path]
        case .array(let a): return a.enumerated().flatMap { nonFiniteNumbers($1, at: "\(path)[\($0)]") }
        case .object(let o):
            return o.keys.sorted().flatMap { nonFiniteNumbers(o[$0]!, at: path.isEmpty ? $0 : "\(path).\($0)") }
        default: return []
        }
    }

    static func checkTrigger(_ trigger: FlowTrigger, runAs: RunAs?, _ problem: (String, String) -> Void) {
        let kinds = [trigger.event != nil, trigger.cron != nil, trigger.interval != nil, trigger.manual == true].filter
        { $0 }.count
        if kinds == 0 { problem("trigger", "give one of event, cron, interval or manual: true") }
        if kinds > 1 { problem("trigger", "give only one of event, cron, interval or manual") }
        if trigger.intent != nil, trigger.event == nil {
            problem("trigger.intent", "only event triggers take an intent")
        }
        if let cron = trigger.cron {
            do throws(CronProblem) {
                _ = try CronExpression(cron)
            } catch {
                problem("trigger.cron", error.message)
            }
        }
        if let timezone = trigger.timezone {
            if trigger.cron == nil {
                problem("trigger.timezone", "only cron triggers take a time zone (an interval counts in UTC)")
            }
            do throws(CronProblem) { _ = try ScheduleSpec.zone(timezone) } catch {
                problem("trigger.timezone", error.message)
            }
        }
        var intervalMillis: Int64?
        if let interval = trigger.interval {
            do throws(CronProblem) {
                if case .interval(let millis) = try ScheduleSpec.interval(interval) { intervalMillis = millis }
            } catch {
                problem("trigger.interval", error.message)
            }
        }
        checkSchedulePolicies(trigger, runAs: runAs, intervalMillis: intervalMillis, problem)
    }

    /// The schedule-only fields: overlap, catch-up window, jitter and the delegated user.
    static func checkSchedulePolicies(
        _ trigger: FlowTrigger, runAs: RunAs?, intervalMillis: Int64?, _ problem: (String, String) -> Void
    ) {
        let fields: [(String, Bool)] = [
            ("overlap", trigger.overlap != nil), ("catchup_window", trigger.catchup_window != nil),
            ("jitter", trigger.jitter != nil), ("on_behalf_of", trigger.on_behalf_of != nil),
        ]
        if !trigger.isSchedule {
            for (name, present) in fields where present {
                problem("trigger.\(name)", "only cron and interval triggers take \(name)")
            }
            return
        }
        if let overlap = trigger.overlap, OverlapPolicy(rawValue: overlap) == nil {
            problem(
                "trigger.overlap",
                "unknown overlap policy \(quoted(overlap)); use one of \(OverlapPolicy.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        if let window = trigger.catchup_window {
            switch DurationText.parse(window) {
            case .failure(let failure): problem("trigger.catchup_window", failure.message)
            case .success(let seconds) where seconds > 7 * 86_400:
                problem("trigger.catchup_window", "\(quoted(window)) is longer than the longest catch-up window, 7d")
            case .success: break
            }
        }
        if let jitter = trigger.jitter {
            switch DurationText.parse(jitter) {
            case .failure(let failure): problem("trigger.jitter", failure.message)
            case .success(let seconds) where seconds > 3600:
                problem("trigger.jitter", "\(quoted(jitter)) is longer than the longest jitter, 1h")
            case .success(let seconds):
                if let intervalMillis, seconds * 1000 >= Double(intervalMillis) {
                    problem(
                        "trigger.jitter",
                        "\(quoted(jitter)) is not shorter than the interval \(quoted(trigger.interval ?? "")); a firing would start after the next one is due"
                    )
                }
            }
        }
        switch runAs {
        case .user?:
            if (trigger.on_behalf_of ?? "").isEmpty {
                problem(
                    "trigger.on_behalf_of",
                    "a run_as: user flow on a schedule needs its delegated user: name the user's id (\"on_behalf_of\": \"u-1\")"
                )
            }
        case .service?:
            if trigger.on_behalf_of != nil {
                problem("trigger.on_behalf_of", "a run_as: service flow acts as the service; leave on_behalf_of out")
            }
        case nil: break
        }
        if let user = trigger.on_behalf_of, user.utf8.count > Limits.identifierBytes {
            problem("trigger.on_behalf_of", "longer than \(Limits.identifierBytes) bytes")
        }
    }

    static func checkTemplates(
        _ value: JSONValue, at: String, allowedSteps: Set<String>, ids: Set<String>, inputs: Set<String>?,
        _ problem: (String, String) -> Void
    ) {
        do {
            for (path, reference) in try Template.references(in: value) {
                checkReference(
                    reference, at: path.isEmpty ? at : "\(at).\(path)", allowedSteps: allowedSteps, ids: ids,
                    inputs: inputs, problem)
            }
        } catch {
            problem(at.isEmpty ? "$" : at, "bad template: \(error.message)")
        }
    }

    static func checkReference(
        _ reference: String, at: String, allowedSteps: Set<String>, ids: Set<String>, inputs: Set<String>?,
        _ problem: (String, String) -> Void
    ) {
        let parts = reference.split(separator: ".").map(String.init)
        guard let root = parts.first, Template.roots.contains(root) else {
            problem(at, "{{\(reference)}}: a reference starts with trigger, input, steps, run or secrets")
            return
        }
        switch root {
        case "steps":
            guard parts.count >= 2 else {
                problem(at, "{{\(reference)}}: name a step, as in steps.<id>.output")
                return
            }
            let step = parts[1]
            if !ids.contains(step) {
                problem(at, "{{\(reference)}}: unknown step \"\(step)\"")
            } else if !allowedSteps.contains(step) {
                problem(
                    at,
                    "{{\(reference)}}: step \"\(step)\" is not among this step's depends_on (directly or through others), so its output may not exist yet"
                )
            }
            if parts.count >= 3, !["output", "status", "attempts"].contains(parts[2]) {
                problem(at, "{{\(reference)}}: a step offers output, status or attempts")
            }
        case "input":
            if let inputs, parts.count >= 2, !inputs.contains(parts[1]) {
                problem(at, "{{\(reference)}}: input \"\(parts[1])\" is not declared in inputs")
            }
        case SecretReferences.root:
            if parts.count != 2 || !SecretReferences.isValidName(parts[1]) {
                problem(at, "{{\(reference)}}: name one secret, as in secrets.crm_token (letters, digits and _)")
            }
        case "run":
            let known: Set<String> = ["id", "flow_id", "flow_version", "mode", "actor", "started_at"]
            if parts.count >= 2, !known.contains(parts[1]) {
                problem(at, "{{\(reference)}}: a run offers \(known.sorted().joined(separator: ", "))")
            }
        default:
            break
        }
    }

    /// Steps in an order where each comes after its dependencies; steps left out are in or behind a cycle.
    public static func topologicalOrder(_ steps: [StepDefinition]) -> (ordered: [String], cycleMembers: Set<String>) {
        let ids = Set(steps.map(\.id))
        var remaining = Dictionary(
            steps.map { ($0.id, Set($0.dependencies.filter { ids.contains($0) && $0 != "" })) },
            uniquingKeysWith: { a, _ in a })
        var ordered: [String] = []
        var progress = true
        while progress {
            progress = false
            for step in steps where remaining[step.id] != nil && remaining[step.id]!.isEmpty {
                ordered.append(step.id)
                remaining[step.id] = nil
                for key in remaining.keys { remaining[key]!.remove(step.id) }
                progress = true
            }
        }
        // Members of a cycle: steps that can reach themselves.
        var members: Set<String> = []
        for start in remaining.keys {
            var stack = Array(remaining[start] ?? [])
            var visited: Set<String> = []
            while let next = stack.popLast() {
                if next == start {
                    members.insert(start)
                    break
                }
                if visited.insert(next).inserted { stack += Array(remaining[next] ?? []) }
            }
        }
        return (ordered, members)
    }

    /// For each step, every step it depends on directly or transitively.
    static func ancestorSets(_ steps: [StepDefinition]) -> [String: Set<String>] {
        let deps = Dictionary(steps.map { ($0.id, $0.dependencies) }, uniquingKeysWith: { a, _ in a })
        var result: [String: Set<String>] = [:]
        for step in steps {
            var seen: Set<String> = []
            var stack = step.dependencies
            while let next = stack.popLast() {
                if seen.insert(next).inserted { stack += deps[next] ?? [] }
            }
            result[step.id] = seen
        }
        return result
    }
}
