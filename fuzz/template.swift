// libFuzzer target: templates and `when` conditions. Parsing and evaluating never trap; a condition's errors
// name a character; whatever parses evaluates against a context with numbers, strings and nesting.
import LedgerCore

let context: JSONValue = [
    "trigger": [
        "n": 3, "big": 1e308, "tiny": 1e-300, "neg": -1e308, "s": "text", "list": [1, "two", nil, [3]], "empty": "",
    ],
    "input": ["flag": true, "zero": 0, "obj": ["a": ["b": ["c": 1]]]],
    "steps": ["a": ["status": "SUCCEEDED", "output": ["items": [1, 2, 3], "id": "x"], "attempts": 1]],
    "run": ["id": "r", "flow_id": "f", "flow_version": 1, "mode": "normal"],
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let condition = try Condition.parse(text)
        _ = condition.holds(in: context)
        _ = condition.value(in: context)
        _ = condition.references
    } catch {
        guard error.message.contains("at character") || error.message.contains("characters long") else {
            fatalError("a condition error that names no place: \(error.message)")
        }
    }
    _ = try? Template.references(in: .string(text), at: "with.x")
    _ = try? Template.render(.string(text), context: context, at: "with.x")
    // The same text as a template value when it is JSON (arrays and objects of templates).
    if let value = try? JSONTree.parse(Array(text.utf8)) {
        _ = try? Template.references(in: value)
        _ = try? Template.render(value, context: context)
    }
    return 0
}
