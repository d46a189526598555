/// What a template's references (`{{ path }}`) and a condition's operands are looked up in.
public protocol TemplateScope {
    /// The value at a dotted path (`steps.fetch.output.items.0`), nil where there is none.
    func lookup(_ path: String) -> JSONValue?
}

extension JSONValue: TemplateScope {
    public func lookup(_ path: String) -> JSONValue? { self[path: path] }
}

/// A run's template scope (`trigger`, `input`, `steps.<id>.output|status|attempts`, `run`), read from its state
/// where a reference leads instead of built whole: a decision renders a step's few references, and building the
/// scope of a 40-step run cost a dictionary per step at every decision. Every lookup equals the same path in
/// `RunDecider.context(state)` (a test holds the two together).
public struct RunScope: TemplateScope {
    public let state: RunState

    public init(_ state: RunState) { self.state = state }

    public func lookup(_ path: String) -> JSONValue? {
        let (root, rest) = Self.split(path[...])
        let value: JSONValue
        switch root {
        case "trigger": value = state.trigger.data ?? .null
        case "input": value = state.input
        case "run": value = runObject
        case "steps":
            guard let rest else { return stepsObject }
            let (part, inside) = Self.split(rest)
            let id = String(part)
            // As in the built scope, where a later record of the same step would replace an earlier one. (Read in
            // place: a copy of the record would retain all it holds.)
            guard let index = state.steps.lastIndex(where: { $0.step_id == id }) else { return nil }
            guard let inside else { return Self.object(of: state.steps[index]) }
            let (field, further) = Self.split(inside)
            let member: JSONValue
            switch field {
            case "output": member = state.steps[index].output ?? .null
            case "status": member = .string(state.steps[index].status.rawValue)
            case "attempts": member = .number(Double(state.steps[index].attempts.count))
            default: return nil
            }
            guard let further else { return member }
            return member[path: further]
        default: return nil
        }
        guard let rest else { return value }
        return value[path: rest]
    }

    /// The part before the first `.`, and what follows it (nil when there is no `.`).
    static func split(_ path: Substring) -> (Substring, Substring?) {
        guard let dot = path.firstIndex(of: ".") else { return (path, nil) }
        return (path[..<dot], path[path.index(after: dot)...])
    }

    static func object(of record: StepRecord) -> JSONValue {
        .object([
            "output": record.output ?? .null, "status": .string(record.status.rawValue),
            "attempts": .number(Double(record.attempts.count)),
        ])
    }

    var stepsObject: JSONValue {
        var steps: [String: JSONValue] = [:]
        steps.reserveCapacity(state.steps.count)
        for record in state.steps { steps[record.step_id] = Self.object(of: record) }
        return .object(steps)
    }

    var runObject: JSONValue {
        .object([
            "id": .string(state.run_id), "flow_id": .string(state.flow_id),
            "flow_version": .number(Double(state.flow_version)), "mode": .string(state.mode.rawValue),
            "actor": .string(state.actor), "started_at": .string(state.started_at ?? state.created_at),
        ])
    }

    /// The whole scope as one value.
    public var value: JSONValue {
        .object(["trigger": state.trigger.data ?? .null, "input": state.input, "steps": stepsObject, "run": runObject])
    }
}
