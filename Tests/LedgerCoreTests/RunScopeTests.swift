import LedgerCore
import Testing

/// A decision looks template references up in `RunScope`, read from the run's state where the reference leads;
/// every path must give what the scope built whole (`RunDecider.context`) gives.
struct RunScopeTests {
    /// The scope built whole, as the decider built it before `RunScope` (the reference every lookup is held to).
    static func wholeScope(_ state: RunState) -> JSONValue {
        var steps: [String: JSONValue] = [:]
        for step in state.steps {
            steps[step.step_id] = .object([
                "output": step.output ?? .null, "status": .string(step.status.rawValue),
                "attempts": .number(Double(step.attempts.count)),
            ])
        }
        return .object([
            "trigger": state.trigger.data ?? .null,
            "input": state.input,
            "steps": .object(steps),
            "run": .object([
                "id": .string(state.run_id), "flow_id": .string(state.flow_id),
                "flow_version": .number(Double(state.flow_version)), "mode": .string(state.mode.rawValue),
                "actor": .string(state.actor), "started_at": .string(state.started_at ?? state.created_at),
            ]),
        ])
    }

    /// Every path into `value` (objects by key, arrays by index), each beside what it leads to.
    static func paths(_ value: JSONValue, at prefix: String, into out: inout [String]) {
        out.append(prefix)
        switch value {
        case .object(let object):
            for (key, member) in object { paths(member, at: "\(prefix).\(key)", into: &out) }
        case .array(let array):
            for (index, element) in array.enumerated() { paths(element, at: "\(prefix).\(index)", into: &out) }
        default: break
        }
    }

    @Test(arguments: 0..<30)
    func everyPathGivesWhatTheWholeScopeGives(seed: Int) throws {
        var random = JSONCodecTests.Random(state: UInt64(seed) &+ 7_000_003)
        let bodies = random.bodies()
        guard case .runStarted(var started) = bodies.first(where: { $0.type == EventType.runStarted }) else {
            Issue.record("no start")
            return
        }
        let steps = ["a", "b", "c", "d"]
        started.step_ids = steps
        started.trigger.data = random.json()
        started.input = random.json()
        var state = try #require(
            RunState.evolve(
                nil,
                LedgerEvent(
                    id: "e0", type: EventType.runStarted, time: "t", runid: started.run_id, body: .runStarted(started)),
                sequence: 1))
        var sequence: UInt64 = 1
        for body in bodies.map({ $0.withStep(steps[random.int(0...3)]) }) {
            sequence += 1
            let event = LedgerEvent(id: "e\(sequence)", type: body.type, time: "t", runid: state.run_id, body: body)
            guard let next = RunState.evolve(state, event, sequence: sequence) else { continue }
            state = next
            // Records the log cannot make (a step id repeated, empty, or named like a field) are looked up too.
            var odd = state
            if seed % 2 == 0 {
                var again = StepRecord(step_id: "a")
                again.output = random.json()
                odd.steps += [
                    again, StepRecord(step_id: "output"), StepRecord(step_id: ""), StepRecord(step_id: "x.y"),
                ]
            }
            let whole = Self.wholeScope(odd)
            let scope = RunScope(odd)
            var probes: [String] = []
            for root in ["trigger", "input", "steps", "run"] {
                Self.paths(whole[root] ?? .null, at: root, into: &probes)
            }
            // Paths that lead nowhere, or stop short, or go on past a value.
            probes += [
                "", ".", "steps.", "steps..", "steps.a.", "steps.a.output.", "steps.zz.output", "steps.a.nope",
                "steps.a.status.x", "steps.a.attempts.0", "run.id.x", "run.", "trigger.", "input.0", "input.99",
                "trigger.0.0", "nope", "nope.x", "secrets.k", "run.flow_version", "steps.d", "steps.d.output.0",
                "steps.output", "steps.output.status", "steps..status", "steps.x.y", "steps.x", "run.started_at",
            ]
            for path in probes {
                #expect(scope.lookup(path) == whole[path: path], "seed \(seed), path \(path.debugDescription)")
            }
            #expect(scope.value == whole)
            #expect(RunDecider.context(odd) == whole)
        }
    }

    /// A template and a condition render in a run's scope as in the scope built whole.
    @Test func templatesAndConditionsRenderAlikeInBoth() throws {
        let started = FlowRunStarted(
            run_id: "r", flow_id: "f", flow_version: 3, definition_hash: "h", mode: .live,
            trigger: RunTrigger(kind: .event, data: ["entities": ["title": "T", "n": 2, "tags": ["x", "y"]]]),
            actor: "user:u", input: ["k": "v"], step_ids: ["a", "b"], dedup_key: nil, message_id: nil, channel: nil)
        var state = try #require(
            RunState.evolve(
                nil,
                LedgerEvent(id: "e1", type: EventType.runStarted, time: "t", runid: "r", body: .runStarted(started)),
                sequence: 1))
        let done = LedgerEvent.Body.stepAttemptSucceeded(
            StepAttemptSucceeded(
                step_id: "a", attempt: 1, output: ["n": 5, "list": [1, 2]], started_at: "s", finished_at: "f"))
        state = try #require(
            RunState.evolve(
                state, LedgerEvent(id: "e2", type: done.type, time: "t", runid: "r", body: done), sequence: 2))
        let template: JSONValue = [
            "title": "{{ trigger.entities.title }} by {{run.actor}} ({{steps.a.status}}, {{steps.a.attempts}})",
            "n": "{{steps.a.output.n}}", "second": "{{ steps.a.output.list.1 }}", "tags": "{{trigger.entities.tags}}",
            "input": "{{input}}", "run": "{{run}}", "b": "{{steps.b}}", "missing": "{{steps.b.output}}",
            "secret": "{{secrets.token}}",
        ]
        #expect(
            try Template.render(template, context: RunScope(state))
                == (try Template.render(template, context: Self.wholeScope(state))))
        #expect(throws: Template.RenderError.self) {
            try Template.render("x {{steps.zz.output}}", context: RunScope(state))
        }
        for text in [
            "{{steps.a.output.n}} > {{trigger.entities.n}}", "{{steps.b.status}} == \"QUEUED\"", "!{{steps.b.output}}",
            "{{nope}}",
        ] {
            let condition = try Condition.parse(text)
            #expect(condition.holds(in: RunScope(state)) == condition.holds(in: Self.wholeScope(state)), "\(text)")
        }
        #expect(try Condition.parse("{{steps.a.output.n}} > {{trigger.entities.n}}").holds(in: RunScope(state)))
    }
}
