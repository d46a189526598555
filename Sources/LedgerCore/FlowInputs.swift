extension FlowDefinition {
    /// `given` with the defaults of the flow's declared `inputs` filled in where a value is missing.
    public func applyingInputDefaults(to given: JSONValue) -> JSONValue {
        var values = given.objectValue ?? [:]
        for (name, spec) in inputs ?? [:] where values[name] == nil {
            if let value = spec.default { values[name] = value }
        }
        return .object(values)
    }

    /// What is wrong with `input` for the flow's declared `inputs` (a required one missing, a value of another
    /// type), one sentence each, in input-name order; empty when nothing is.
    public func inputProblems(_ input: JSONValue) -> [String] {
        var problems: [String] = []
        for (name, spec) in (inputs ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let value = input[name], value != .null else {
                if spec.required ?? false { problems.append("input \(name) is required") }
                continue
            }
            let ok: Bool
            switch spec.type ?? "any" {
            case "string": ok = value.stringValue != nil
            case "number": ok = value.numberValue != nil
            case "integer": ok = value.numberValue.map { $0.rounded() == $0 } ?? false
            case "boolean": ok = value.boolValue != nil
            case "object": ok = value.objectValue != nil
            case "array": if case .array = value { ok = true } else { ok = false }
            default: ok = true
            }
            if !ok { problems.append("input \(name) must be of type \(spec.type ?? "any")") }
        }
        return problems
    }
}
