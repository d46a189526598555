import Foundation

/// One problem in a definition: where (a JSON path) and what.
public struct ValidationProblem: Codable, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// Every problem found in a definition.
public struct ValidationFailure: Error, Sendable, Equatable {
    public var problems: [ValidationProblem]
}

/// Checks a definition against the contract and the action registry, reporting every problem at once.
public enum FlowValidator {
    static let inputTypes: Set<String> = ["string", "number", "integer", "boolean", "object", "array", "any"]

    public static func validate(_ json: JSONValue, registry: ActionRegistry = .builtIn) -> Result<FlowDefinition, ValidationFailure> {
        var problems: [ValidationProblem] = []
        func problem(_ path: String, _ message: String) { problems.append(ValidationProblem(path: path, message: message)) }

        guard case .object(let root) = json else {
            return .failure(ValidationFailure(problems: [ValidationProblem(path: "$", message: "a flow definition is a JSON object")]))
        }
        if let id = root["id"]?.stringValue {
            if !Subjects.isValidToken(id) { problem("id", "use letters, digits, \"-\" and \"_\" only (at most 128)") }
        } else {
            problem("id", "required: a string naming the flow")
        }
        // Decode the typed shape; type mismatches are reported with their path.
        var definition: FlowDefinition?
        do {
            let data = try JSONEncoder().encode(json)
            definition = try JSONDecoder().decode(FlowDefinition.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            problem(pathString(context.codingPath.map(\.stringValue) + [key.stringValue]), "required field is missing")
        } catch let DecodingError.typeMismatch(type, context) {
            problem(pathString(context.codingPath.map(\.stringValue)), "has the wrong type (expected \(expected(type)))")
        } catch let DecodingError.valueNotFound(type, context) {
            problem(pathString(context.codingPath.map(\.stringValue)), "must not be null (expected \(expected(type)))")
        } catch {
            problem("$", "could not be read: \(error)")
        }
        guard let definition else { return .failure(ValidationFailure(problems: problems)) }

        if definition.steps.isEmpty { problem("steps", "a flow needs at least one step") }
        var seen: Set<String> = []
        for (i, step) in definition.steps.enumerated() {
            let at = "steps[\(i)]"
            if !Subjects.isValidToken(step.id) {
                problem("\(at).id", "\"\(step.id)\": use letters, digits, \"-\" and \"_\" only")
            }
            if !seen.insert(step.id).inserted { problem("\(at).id", "duplicate step id \"\(step.id)\"") }
        }
        let ids = Set(definition.steps.map(\.id))
        for (i, step) in definition.steps.enumerated() {
            let at = "steps[\(i)]"
            if let spec = registry[step.action] {
                if case .object(let with)? = step.with {
                    for key in spec.required where with[key] == nil {
                        problem("\(at).with.\(key)", "required by action \(step.action)")
                    }
                } else if !spec.required.isEmpty {
                    problem("\(at).with", "action \(step.action) needs with: {\(spec.required.joined(separator: ", "))}")
                }
            } else {
                problem("\(at).action", "unknown action \"\(step.action)\"; known: \(registry.actions.keys.sorted().joined(separator: ", "))")
            }
            for (j, dep) in step.dependencies.enumerated() {
                if dep == step.id {
                    problem("\(at).depends_on[\(j)]", "a step cannot depend on itself")
                } else if !ids.contains(dep) {
                    problem("\(at).depends_on[\(j)]", "unknown step \"\(dep)\"")
                }
            }
            if let retry = step.retry { checkRetry(retry, at: "\(at).retry", problem) }
            if let t = step.timeout_sec, t <= 0 { problem("\(at).timeout_sec", "must be greater than 0") }
            if let c = step.compensate, registry[c.action] == nil {
                problem("\(at).compensate.action", "unknown action \"\(c.action)\"")
            }
        }
        // Where http.request and emit send is literal in the definition, never chosen by a template.
        problems += OutboundTargets.problems(in: definition)
        if let retry = definition.defaults?.retry { checkRetry(retry, at: "defaults.retry", problem) }
        if let t = definition.defaults?.timeout_sec, t <= 0 { problem("defaults.timeout_sec", "must be greater than 0") }
        if let t = definition.run_timeout_sec, t <= 0 { problem("run_timeout_sec", "must be greater than 0") }
        for (name, spec) in definition.inputs ?? [:] {
            if let type = spec.type, !inputTypes.contains(type) {
                problem("inputs.\(name).type", "unknown type \"\(type)\"; use one of \(inputTypes.sorted().joined(separator: ", "))")
            }
        }
        if let trigger = definition.trigger { checkTrigger(trigger, problem) }

        // Cycles and steps that can never run.
        let order = topologicalOrder(definition.steps)
        let cyclic = ids.subtracting(order.ordered)
        for (i, step) in definition.steps.enumerated() where cyclic.contains(step.id) {
            let inCycle = order.cycleMembers.contains(step.id)
            problem(
                "steps[\(i)].depends_on",
                inCycle ? "step \"\(step.id)\" is part of a dependency cycle" : "step \"\(step.id)\" is unreachable: it depends on a step in a cycle")
        }

        // Templates and conditions.
        let ancestors = ancestorSets(definition.steps)
        let inputNames = Set((definition.inputs ?? [:]).keys)
        for (i, step) in definition.steps.enumerated() {
            let at = "steps[\(i)]"
            if let with = step.with {
                checkTemplates(with, at: "\(at).with", allowedSteps: ancestors[step.id] ?? [], ids: ids, inputs: definition.inputs == nil ? nil : inputNames, problem)
            }
            if let when = step.when {
                do {
                    let condition = try Condition.parse(when)
                    for r in condition.references {
                        checkReference(r, at: "\(at).when", allowedSteps: ancestors[step.id] ?? [], ids: ids, inputs: definition.inputs == nil ? nil : inputNames, problem)
                    }
                } catch {
                    problem("\(at).when", "bad condition: \(error.message)")
                }
            }
            if let c = step.compensate?.with {
                checkTemplates(c, at: "\(at).compensate.with", allowedSteps: (ancestors[step.id] ?? []).union([step.id]), ids: ids, inputs: definition.inputs == nil ? nil : inputNames, problem)
            }
        }
        if let output = definition.output {
            checkTemplates(output, at: "output", allowedSteps: ids, ids: ids, inputs: definition.inputs == nil ? nil : inputNames, problem)
        }
        return problems.isEmpty ? .success(definition) : .failure(ValidationFailure(problems: problems))
    }

    static func expected(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Double.Type: return "a number"
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

    static func checkRetry(_ retry: RetryPolicy, at: String, _ problem: (String, String) -> Void) {
        if let n = retry.max_attempts, n < 1 { problem("\(at).max_attempts", "must be at least 1") }
        if let b = retry.backoff, b != "exponential", b != "fixed" { problem("\(at).backoff", "use \"exponential\" or \"fixed\"") }
        if let i = retry.initial_ms, i < 0 { problem("\(at).initial_ms", "must not be negative") }
        if let m = retry.max_ms, m < (retry.initial_ms ?? 0) { problem("\(at).max_ms", "must be at least initial_ms") }
    }

    static func checkTrigger(_ trigger: FlowTrigger, _ problem: (String, String) -> Void) {
        let kinds = [trigger.event != nil, trigger.cron != nil, trigger.interval != nil, trigger.manual == true].filter { $0 }.count
        if kinds == 0 { problem("trigger", "give one of event, cron, interval or manual: true") }
        if kinds > 1 { problem("trigger", "give only one of event, cron, interval or manual") }
        if trigger.intent != nil, trigger.event == nil { problem("trigger.intent", "only event triggers take an intent") }
        if let cron = trigger.cron, let message = CronCheck.problem(cron) { problem("trigger.cron", message) }
        if let interval = trigger.interval, DurationText.seconds(interval) == nil {
            problem("trigger.interval", "\"\(interval)\" is not a duration such as 30s, 15m, 1h or 1d")
        }
    }

    static func checkTemplates(
        _ value: JSONValue, at: String, allowedSteps: Set<String>, ids: Set<String>, inputs: Set<String>?, _ problem: (String, String) -> Void
    ) {
        do {
            for (path, reference) in try Template.references(in: value) {
                checkReference(reference, at: path.isEmpty ? at : "\(at).\(path)", allowedSteps: allowedSteps, ids: ids, inputs: inputs, problem)
            }
        } catch {
            problem(at.isEmpty ? "$" : at, "bad template: \(error.message)")
        }
    }

    static func checkReference(
        _ reference: String, at: String, allowedSteps: Set<String>, ids: Set<String>, inputs: Set<String>?, _ problem: (String, String) -> Void
    ) {
        let parts = reference.split(separator: ".").map(String.init)
        guard let root = parts.first, Template.roots.contains(root) else {
            problem(at, "{{\(reference)}}: a reference starts with trigger, input, steps or run")
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
                problem(at, "{{\(reference)}}: step \"\(step)\" is not among this step's depends_on (directly or through others), so its output may not exist yet")
            }
            if parts.count >= 3, !["output", "status", "attempts"].contains(parts[2]) {
                problem(at, "{{\(reference)}}: a step offers output, status or attempts")
            }
        case "input":
            if let inputs, parts.count >= 2, !inputs.contains(parts[1]) {
                problem(at, "{{\(reference)}}: input \"\(parts[1])\" is not declared in inputs")
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
        var remaining = Dictionary(steps.map { ($0.id, Set($0.dependencies.filter { ids.contains($0) && $0 != "" })) }, uniquingKeysWith: { a, _ in a })
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

/// Durations written as text: `500ms`, `30s`, `15m`, `1h`, `1d`.
public enum DurationText {
    public static func seconds(_ text: String) -> Double? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let n = Double(text.dropLast(suffix.count)), n > 0 else { return nil }
            return n * factor
        }
        return nil
    }
}

/// Structural checks of five-field cron expressions (minute hour day-of-month month day-of-week).
public enum CronCheck {
    static let ranges: [(String, ClosedRange<Int>)] = [("minute", 0...59), ("hour", 0...23), ("day of month", 1...31), ("month", 1...12), ("day of week", 0...7)]
    static let names: [String: Int] = [
        "SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6, "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4,
        "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
    ]

    /// Nil when `cron` is well formed, else what is wrong with it.
    public static func problem(_ cron: String) -> String? {
        let fields = cron.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 5 else { return "\"\(cron)\": a cron expression has 5 fields (minute hour day month weekday)" }
        for (field, (name, range)) in zip(fields, ranges) {
            for part in field.split(separator: ",") {
                let pieces = part.split(separator: "/", maxSplits: 1)
                if pieces.count == 2, Int(pieces[1]).map({ $0 <= 0 }) ?? true { return "\"\(field)\": bad step in the \(name) field" }
                let body = pieces[0]
                if body == "*" { continue }
                let bounds = body.split(separator: "-", maxSplits: 1)
                for bound in bounds {
                    let value = Int(bound) ?? names[bound.uppercased()]
                    guard let value, range.contains(value) else {
                        return "\"\(field)\": \(bound) is not a valid \(name) (\(range.lowerBound)-\(range.upperBound))"
                    }
                }
            }
        }
        return nil
    }
}
