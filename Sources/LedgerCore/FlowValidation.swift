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

    public static func validate(
        _ json: JSONValue, registry: ActionRegistry = .builtIn
    ) -> Result<FlowDefinition, ValidationFailure> {
        var problems: [ValidationProblem] = []
        func problem(_ path: String, _ message: String) {
            problems.append(ValidationProblem(path: path, message: message))
        }

        guard case .object(let root) = json else {
            return .failure(
                ValidationFailure(problems: [
                    ValidationProblem(path: "$", message: "a flow definition is a JSON object")
                ]))
        }
        // Limits first: a definition past them is not read any further.
        let depth = nestingDepth(json)
        if depth > Limits.definitionJSONDepth {
            problem(
                "$",
                "the definition nests \(depth) levels deep; at most \(Limits.definitionJSONDepth) are accepted (flatten `with` and `output`)"
            )
            return .failure(ValidationFailure(problems: problems))
        }
        let size = json.compactJSON.utf8.count
        if size > Limits.definitionBytes {
            problem(
                "$",
                "the definition is \(size) bytes as compact JSON; at most \(Limits.definitionBytes) bytes are accepted (split the flow)"
            )
            return .failure(ValidationFailure(problems: problems))
        }
        if case .array(let steps)? = root["steps"], steps.count > Limits.stepsPerFlow {
            problem("steps", "\(steps.count) steps; a flow may have at most \(Limits.stepsPerFlow) (split the flow)")
            return .failure(ValidationFailure(problems: problems))
        }
        if case .object(let inputs)? = root["inputs"], inputs.count > Limits.inputsPerFlow {
            problem(
                "inputs",
                "\(inputs.count) inputs; a flow may declare at most \(Limits.inputsPerFlow) (pass an object instead)")
            return .failure(ValidationFailure(problems: problems))
        }
        for path in nonFiniteNumbers(json, at: "") {
            problem(path.isEmpty ? "$" : path, "is not a finite number; JSON numbers must be finite")
        }
        if let id = root["id"]?.stringValue {
            if !Subjects.isValidToken(id) { problem("id", "use letters, digits, \"-\" and \"_\" only (at most 128)") }
        } else {
            problem("id", "required: a string naming the flow")
        }
        // Integer fields that a decoder would refuse (fractions, numbers past Int) are named here, precisely.
        var reported = Set(problems.map(\.path))
        func integerFields(_ object: JSONValue?, at: String, _ bounds: [(String, ClosedRange<Int>)]) {
            guard case .object(let fields)? = object else { return }
            for (key, range) in bounds {
                guard case .number(let n)? = fields[key], n.exactInt() == nil else { continue }
                problem("\(at).\(key)", "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                reported.insert("\(at).\(key)")
            }
        }
        integerFields(root["defaults"]?["retry"], at: "defaults.retry", retryBounds)
        if case .array(let steps)? = root["steps"] {
            for (i, step) in steps.enumerated() { integerFields(step["retry"], at: "steps[\(i)].retry", retryBounds) }
        }
        // Fields with a closed set of values are named here: the decoder would stop at the first unknown one.
        let readable = closedValues(root, problem)
        // Decode the typed shape (through the tree, without re-encoding); type mismatches are reported with their path.
        var definition: FlowDefinition?
        do {
            definition = try FlowDefinition(from: TreeDecoder(value: readable, codingPath: []))
        } catch let DecodingError.keyNotFound(key, context) {
            problem(pathString(context.codingPath.map(\.stringValue) + [key.stringValue]), "required field is missing")
        } catch let DecodingError.typeMismatch(type, context) {
            let path = pathString(context.codingPath.map(\.stringValue))
            if !reported.contains(path) { problem(path, "has the wrong type (expected \(expected(type)))") }
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
                problem(
                    "\(at).id",
                    "\(quoted(step.id)): use letters, digits, \"-\" and \"_\" only (at most \(Limits.tokenCharacters))")
            }
            if !seen.insert(step.id).inserted { problem("\(at).id", "duplicate step id \(quoted(step.id))") }
            if step.dependencies.count > Limits.stepsPerFlow {
                problem("\(at).depends_on", "\(step.dependencies.count) entries; at most \(Limits.stepsPerFlow)")
            }
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
                    problem(
                        "\(at).with", "action \(step.action) needs with: {\(spec.required.joined(separator: ", "))}")
                }
            } else {
                problem(
                    "\(at).action",
                    "unknown action \(quoted(step.action)); known: \(registry.actions.keys.sorted().joined(separator: ", "))"
                )
            }
            for (j, dep) in step.dependencies.prefix(Limits.stepsPerFlow).enumerated() {
                if dep == step.id {
                    problem("\(at).depends_on[\(j)]", "a step cannot depend on itself")
                } else if !ids.contains(dep) {
                    problem("\(at).depends_on[\(j)]", "unknown step \(quoted(dep))")
                }
            }
            if let retry = step.retry { checkRetry(retry, at: "\(at).retry", problem) }
            if let t = step.timeout_sec {
                checkSeconds(t, at: "\(at).timeout_sec", limit: Limits.stepTimeoutSeconds, problem)
            }
            if step.action == "delay", case .object(let with)? = step.with {
                checkDelay(with, at: "\(at).with", problem)
            }
            if let c = step.compensate, registry[c.action] == nil {
                problem("\(at).compensate.action", "unknown action \(quoted(c.action))")
            }
        }
        // Where http.request and emit send is literal in the definition, never chosen by a template.
        problems += OutboundTargets.problems(in: definition)
        if let retry = definition.defaults?.retry { checkRetry(retry, at: "defaults.retry", problem) }
        if let t = definition.defaults?.timeout_sec {
            checkSeconds(t, at: "defaults.timeout_sec", limit: Limits.stepTimeoutSeconds, problem)
        }
        if let t = definition.run_timeout_sec {
            checkSeconds(t, at: "run_timeout_sec", limit: Limits.runTimeoutSeconds, problem)
        }
        for (name, spec) in definition.inputs ?? [:] {
            if let type = spec.type, !inputTypes.contains(type) {
                problem(
                    "inputs.\(name).type",
                    "unknown type \(quoted(type)); use one of \(inputTypes.sorted().joined(separator: ", "))")
            }
        }
        for found in SecretReferences.problems(in: definition) { problem(found.path, found.message) }
        if let trigger = definition.trigger {
            checkTrigger(trigger, runAs: definition.run_as, problem)
        } else {
            problem(
                "trigger",
                "a flow needs a trigger: {\"event\": \"AssistantCommandIssued\", \"intent\": ...}, {\"cron\": ...}, {\"interval\": ...} or {\"manual\": true} (every flow can also be run by hand)"
            )
        }

        // Cycles and steps that can never run.
        let order = topologicalOrder(definition.steps)
        let cyclic = ids.subtracting(order.ordered)
        for (i, step) in definition.steps.enumerated() where cyclic.contains(step.id) {
            let inCycle = order.cycleMembers.contains(step.id)
            problem(
                "steps[\(i)].depends_on",
                inCycle
                    ? "step \"\(step.id)\" is part of a dependency cycle"
                    : "step \"\(step.id)\" is unreachable: it depends on a step in a cycle")
        }

        // Templates and conditions.
        let ancestors = ancestorSets(definition.steps)
        let inputNames = Set((definition.inputs ?? [:]).keys)
        for (i, step) in definition.steps.enumerated() {
            let at = "steps[\(i)]"
            if let with = step.with {
                checkTemplates(
                    with, at: "\(at).with", allowedSteps: ancestors[step.id] ?? [], ids: ids,
                    inputs: definition.inputs == nil ? nil : inputNames, problem)
            }
            if let when = step.when {
                do {
                    let condition = try Condition.parse(when)
                    for r in condition.references {
                        checkReference(
                            r, at: "\(at).when", allowedSteps: ancestors[step.id] ?? [], ids: ids,
                            inputs: definition.inputs == nil ? nil : inputNames, problem)
                    }
                } catch {
                    problem("\(at).when", "bad condition: \(error.message)")
                }
            }
            if let c = step.compensate?.with {
                checkTemplates(
                    c, at: "\(at).compensate.with", allowedSteps: (ancestors[step.id] ?? []).union([step.id]), ids: ids,
                    inputs: definition.inputs == nil ? nil : inputNames, problem)
            }
        }
        if let output = FlowOutputSpec(definition.output).final {
            checkTemplates(
                output, at: "output", allowedSteps: ids, ids: ids, inputs: definition.inputs == nil ? nil : inputNames,
                problem)
        }
        FlowOutputSpec.problems(definition.output, inputs: definition.inputs == nil ? nil : inputNames, problem)
        return problems.isEmpty ? .success(definition) : .failure(ValidationFailure(problems: problems))
    }
}
