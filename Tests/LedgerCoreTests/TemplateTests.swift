import LedgerCore
import Testing

@Suite struct TemplateTests {
    let context: JSONValue = [
        "trigger": ["entities": ["title": "Dentist", "count": 3, "flags": ["a", "b"]]],
        "steps": ["create": ["output": ["event_id": "e-1"]]],
        "input": [:], "run": ["id": "r-1"],
    ]

    @Test func aSingleReferenceKeepsItsJSONType() throws {
        #expect(try Template.render("{{trigger.entities.count}}", context: context) == 3)
        #expect(try Template.render("{{ trigger.entities.flags }}", context: context) == ["a", "b"])
        #expect(try Template.render("{{trigger.entities.missing}}", context: context) == .null)
    }

    @Test func interpolationRendersText() throws {
        #expect(
            try Template.render(
                "Event {{steps.create.output.event_id}} for {{trigger.entities.title}}", context: context)
                == "Event e-1 for Dentist")
        #expect(try Template.render(["a": ["{{run.id}}", 1]], context: context) == ["a": ["r-1", 1]])
    }

    @Test func aMissingValueInsideTextIsAClearError() {
        #expect(throws: Template.RenderError.self) { try Template.render("x {{trigger.nope}}", context: context) }
        do {
            _ = try Template.render("x {{trigger.nope}}", context: context, at: "output.text")
        } catch {
            #expect(error.description == "output.text: {{trigger.nope}} has no value in this run")
        }
    }

    @Test func conditions() throws {
        func holds(_ text: String) throws -> Bool { try Condition.parse(text).holds(in: context) }
        #expect(try holds("{{trigger.entities.title}}"))
        #expect(try !holds("{{trigger.entities.nothing}}"))
        #expect(try holds("{{trigger.entities.count}} >= 3 && {{trigger.entities.title}} == \"Dentist\""))
        #expect(try holds("!{{trigger.entities.nothing}} || false"))
        #expect(try !holds("({{trigger.entities.count}} < 2) || {{trigger.entities.title}} != 'Dentist'"))
        #expect(throws: Condition.ParseError.self) { try Condition.parse("{{a}} ==") }
        #expect(throws: Condition.ParseError.self) { try Condition.parse("bareword") }
    }
}
