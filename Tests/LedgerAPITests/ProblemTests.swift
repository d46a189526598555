import LedgerCore
import LedgerTestSupport
import Testing

extension Integration {
    /// Every refusal of the HTTP API is a problem document with its code (SPEC §4), over the real engine.
    @Suite struct ProblemTests {
        @Test func theAPIAnswersWithProblems() async throws {
            try await withTestStack { stack in
                let (noToken, problem) = try await stack.http("GET", "/automation/flows", token: nil)
                #expect(noToken == 401)
                #expect(problem["code"] == "unauthorized")
                #expect(try await stack.http("GET", "/automation/flows", token: "wrong").0 == 401)
                let (invalid, details) = try await stack.http(
                    "POST", "/automation/flows", ["id": "f", "steps": [["id": "a", "action": "nope"]]])
                #expect(invalid == 422)
                #expect(details["code"] == "invalid_definition")
                #expect(details[path: "errors.0.path"] == "steps[0].action")
                try await stack.activateExample()
                let (exists, existsProblem) = try await stack.http(
                    "POST", "/automation/flows", Fixtures.calendarCreateEvent)
                #expect(exists == 409)
                #expect(existsProblem["code"] == "flow_exists")
                #expect(try await stack.http("GET", "/automation/runs/nope").1["code"] == "run_not_found")
                #expect(try await stack.http("GET", "/automation/flows/nope").1["code"] == "flow_not_found")
                let (badBody, bad) = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run", ["input": ["title": 3]])
                #expect(badBody == 400)
                #expect(bad["detail"]?.stringValue?.contains("input start is required") == true)
                #expect(try await stack.http("POST", "/automation/flows/calendar-create-event/deactivate").0 == 200)
                let (inactive, state) = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run", ["input": ["title": "x", "start": "s"]])
                #expect(inactive == 409)
                #expect(state["code"] == "invalid_state")
                var changed = Fixtures.calendarCreateEvent.objectValue!
                changed["version"] = 7
                let (conflict, conflictBody) = try await stack.http(
                    "PUT", "/automation/flows/calendar-create-event", .object(changed))
                #expect(conflict == 409)
                #expect(conflictBody["current_version"] == 1)
                changed["version"] = 1
                changed["name"] = "renamed"
                let (updated, newVersion) = try await stack.http(
                    "PUT", "/automation/flows/calendar-create-event", .object(changed))
                #expect(updated == 200)
                #expect(newVersion["version"] == 2)
                #expect(
                    try await stack.http("GET", "/automation/flows/calendar-create-event?version=1").1[
                        path: "definition.name"] == "Create a calendar event from chat")
                let (_, health) = try await stack.http("GET", "/health", token: nil)
                #expect(health["status"] == "ok")
                #expect(try await stack.http("GET", "/metrics", token: nil).0 == 401)
                let (metricsStatus, metrics) = try await stack.http("GET", "/metrics")
                #expect(metricsStatus == 200)
                #expect(metrics.stringValue?.contains("ledgerflow_projection_lag ") == true)
                #expect(metrics.stringValue?.contains("# TYPE ledgerflow_projection_checkpoint gauge") == true)
                #expect(metrics.stringValue?.contains("# TYPE ledgerflow_http_requests_total counter") == true)
            }
        }
    }
}
