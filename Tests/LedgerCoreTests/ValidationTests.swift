import Foundation
import LedgerCore
import Testing

@Suite struct ValidationTests {
    func json(_ text: String) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    @Test func theSpecExampleIsValid() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../examples/flows/calendar-create-event.json")
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url))
        let definition = try FlowValidator.validate(value).get()
        #expect(definition.steps.map(\.id) == ["create", "related"])
    }

    @Test func everyProblemIsReportedAtOnce() throws {
        let definition = try json(
            #"""
            {"id": "bad flow", "trigger": {"cron": "61 * * * *"},
             "steps": [
               {"id": "a", "action": "no.such", "depends_on": ["c"]},
               {"id": "b", "action": "transform", "with": {"value": "{{steps.c.output}}"}, "when": "{{x}} =="},
               {"id": "c", "action": "transform", "with": {"value": 1}, "depends_on": ["a"]},
               {"id": "d", "action": "transform", "with": {"value": "{{input.nope}}"}, "depends_on": ["zzz"]}
             ],
             "inputs": {"ok": {"type": "string"}}}
            """#)
        guard case .failure(let failure) = FlowValidator.validate(definition) else {
            Issue.record("accepted a broken definition")
            return
        }
        let text = failure.problems.map(\.description).joined(separator: "\n")
        for expected in [
            "id: use letters", "trigger.cron", "steps[0].action: unknown action \"no.such\"", "dependency cycle",
            "steps[1].with.value: {{steps.c.output}}: step \"c\" is not among this step's depends_on",
            "steps[1].when: bad condition", "steps[3].depends_on[0]: unknown step \"zzz\"",
            "input \"nope\" is not declared",
        ] {
            #expect(text.contains(expected), "missing: \(expected)\nin:\n\(text)")
        }
    }

    @Test func wrongTypesNameTheirPath() throws {
        let definition = try json(
            #"{"id": "f", "steps": [{"id": "a", "action": "transform", "with": {"value": 1}, "depends_on": "b"}]}"#)
        guard case .failure(let failure) = FlowValidator.validate(definition) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.problems.first?.path == "steps[0].depends_on")
    }

    @Test func retryBackoffGrowsAndIsCapped() {
        let policy = RetryPolicy(max_attempts: 5, backoff: .exponential, initial_ms: 100, max_ms: 1000, jitter: false)
        #expect((1...5).map { policy.delayMillis(after: $0, random: 0.5) } == [100, 200, 400, 800, 1000])
        let jittered = RetryPolicy(initial_ms: 100, max_ms: 1000)
        #expect(jittered.delayMillis(after: 2, random: 0) == 100)
        #expect(jittered.delayMillis(after: 2, random: 0.999) <= 200)
    }
}

@Suite struct ExampleTests {
    /// Every example in examples/flows/ is a valid definition (README points to them as the reference).
    @Test func everyExampleValidates() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../examples/flows"
        ).standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }
        #expect(files.count >= 4)
        for file in files {
            let value = try JSONDecoder().decode(
                JSONValue.self, from: Data(contentsOf: directory.appendingPathComponent(file)))
            if case .failure(let failure) = FlowValidator.validate(value) {
                Issue.record("\(file): \(failure.problems.map(\.description).joined(separator: "; "))")
            }
        }
    }
}
