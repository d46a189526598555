import Foundation
import LedgerCore
import LedgerTestSupport
import Testing

@testable import LedgerEngine

extension Integration {
    /// A run an operator starts renders the flow's templates as a run started by the event its trigger names.
    @Suite struct ManualRunTests {
        @Test func aManualRunRendersTheTemplatesATriggerWould() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                // The README's own example: the inputs reach `{{trigger.entities.title}}`.
                let (status, answer) = try await stack.http(
                    "POST", "/automation/flows/calendar-create-event/run",
                    ["input": ["title": "Standup", "start": "2026-11-25T09:00:00Z"], "on_behalf_of": "u-1"])
                #expect(status == 202)
                let runID = try #require(answer["run_id"]?.stringValue)
                try await eventually("the manual run is SUCCEEDED") {
                    try await stack.http("GET", "/automation/runs/\(runID)").1["status"] == "SUCCEEDED"
                }
                let run = try await stack.http("GET", "/automation/runs/\(runID)").1
                #expect(run[path: "output.text"] == "Listo, creé el evento Standup.")
                #expect(run[path: "trigger.kind"] == "manual")
                #expect(run["actor"] == "tester")
            }
        }
    }
}
