import Foundation
import LedgerCore
import LedgerTestSupport
import Testing

@testable import LedgerEngine

extension Integration {
    /// Schedules fire on the scheduler's leader; each firing's outcome is one event in the log.
    @Suite struct ScheduleTests {
        static func flow(_ id: String, trigger: JSONValue, steps: JSONValue? = nil) -> JSONValue {
            [
                "id": .string(id), "trigger": trigger,
                "steps": steps ?? [["id": "at", "action": "transform", "with": ["value": "{{trigger.scheduled_at}}"]]],
            ]
        }

        static func activate(_ stack: TestStack, _ definition: JSONValue) async throws {
            let id = definition["id"]!.stringValue!
            let (created, answer) = try await stack.http("POST", "/automation/flows", definition)
            #expect(created == 201, "\(answer)")
            let (activated, _) = try await stack.http("POST", "/automation/flows/\(id)/activate")
            #expect(activated == 200)
        }

        static func schedule(_ stack: TestStack, _ id: String) async throws -> JSONValue? {
            let list = try await stack.http("GET", "/automation/schedules").1
            guard case .array(let all)? = list["schedules"] else { return nil }
            return all.first { $0["flow_id"] == .string(id) }
        }

        @Test func anIntervalScheduleStartsRunsWithTheirNominalTime() async throws {
            try await withTestStack { stack in
                try await Self.activate(stack, Self.flow("every-second", trigger: ["interval": "1s"]))
                try await eventually("three scheduled runs succeeded") {
                    try stack.runs().filter { $0.flow_id == "every-second" && $0.status == .succeeded }.count >= 3
                }
                for run in try stack.runs() where run.flow_id == "every-second" {
                    #expect(run.trigger.kind == .schedule)
                    let scheduledAt = try #require(run.trigger.scheduled_at)
                    let nominal = try #require(Timestamp.parse(scheduledAt))
                    #expect(ScheduleSpec.millis(nominal) % 1000 == 0)
                    #expect(run.run_id == DerivedID.uuid("every-second/schedule/\(ScheduleSpec.millis(nominal))"))
                    if run.status == .succeeded {
                        #expect(run.steps.first?.output == .string(scheduledAt))
                    }
                }
                let listed = try #require(try await Self.schedule(stack, "every-second"))
                #expect(listed["paused"] == false)
                #expect(listed[path: "policy.overlap"] == "skip")
                #expect((listed["next_firings"]?.arrayValue?.count ?? 0) == 3)
            }
        }

        @Test func pauseAndResumeAreAuditedAndPausedFiringsAreRecorded() async throws {
            try await withTestStack { stack in
                try await Self.activate(stack, Self.flow("pausable", trigger: ["interval": "1s"]))
                let (paused, answer) = try await stack.http(
                    "POST", "/automation/schedules/pausable/pause", ["reason": "maintenance"])
                #expect(paused == 200, "\(answer)")
                #expect(answer["paused"] == true)
                try await eventually("paused firings are recorded with their class") {
                    let listed = try await Self.schedule(stack, "pausable")
                    return (listed?[path: "skipped.paused"]?.numberValue ?? 0) >= 2
                }
                let metrics = String(decoding: stack.engine.metrics.render(), as: UTF8.self)
                #expect(
                    metrics.contains(#"ledgerflow_schedule_firings_skipped_total{class="paused",flow_id="pausable"}"#)
                        || metrics.contains(
                            #"ledgerflow_schedule_firings_skipped_total{flow_id="pausable",class="paused"}"#),
                    "\(metrics)")
                let before = try stack.runs().filter { $0.flow_id == "pausable" }.count
                #expect(try await stack.http("POST", "/automation/schedules/pausable/resume").0 == 200)
                try await eventually("runs start again after resume") {
                    try stack.runs().filter { $0.flow_id == "pausable" }.count > before
                }
                let audit = try await stack.http("GET", "/automation/audit?flow_id=pausable").1
                let actions = audit["entries"]?.arrayValue?.compactMap { $0["action"]?.stringValue } ?? []
                #expect(actions.contains("schedule_pause"))
                #expect(actions.contains("schedule_resume"))
            }
        }

        @Test func previewAndHostileInputs() async throws {
            try await withTestStack { stack in
                let (ok, preview) = try await stack.http(
                    "GET",
                    "/automation/schedules/preview?cron=30%202%20*%20*%20*&timezone=Europe/Madrid&count=2&from=2026-03-28T12:00:00Z"
                )
                #expect(ok == 200)
                #expect(preview["firings"] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"])
                for bad in [
                    "cron=*/0%20*%20*%20*%20*", "cron=0%200%2030%202%20*", "cron=0%209%20*%20*%20*&timezone=Mars/Base",
                    "cron=0%209%20*%20*%20*&count=1000000000", "cron=0%209%20*%20*%20*&from=0001-01-01T00:00:00Z",
                    "interval=0s", "interval=1000000h", "",
                ] {
                    let (status, problem) = try await stack.http("GET", "/automation/schedules/preview?\(bad)")
                    #expect(status == 400, "\(bad): \(problem)")
                }
                let (refused, problem) = try await stack.http(
                    "POST", "/automation/flows", Self.flow("bad", trigger: ["interval": "1m", "jitter": "5m"]))
                #expect(refused == 422)
                #expect(problem.compactJSON.contains("trigger.jitter"))
            }
        }

        /// With a manual clock: missed firings beyond the catch-up window are recorded as skipped, those within it
        /// run once each; a running run makes the next firing skip (overlap skip).
        @Test func catchUpAndOverlapSkip() async throws {
            let manual = ManualClock()
            var configuration = TestStack.loopbackAllowed
            configuration.clock = ManualRunClock(manual, epoch: Date())
            try await withTestStack(configuration: configuration) { stack in
                try await Self.activate(
                    stack,
                    Self.flow(
                        "catchup", trigger: ["interval": "1m", "catchup_window": "150s"],
                        steps: [["id": "wait", "action": "delay", "with": ["duration": "1h"]]]))
                manual.advance(by: .seconds(600))
                try await eventually("missed firings recorded and the ones in the window decided") {
                    let listed = try await Self.schedule(stack, "catchup")
                    return (listed?[path: "skipped.missed_catchup_window"]?.numberValue ?? 0) >= 7
                        && (listed?["started"]?.numberValue ?? 0) >= 1
                        && (listed?[path: "skipped.skip_overlap"]?.numberValue ?? 0) >= 1
                }
                let listed = try #require(try await Self.schedule(stack, "catchup"))
                // 10 firings: the 8 older than the window (as one event or more), 2 within it: one started, the next
                // skipped because the first is still running (its delay waits on the manual clock).
                let missed = listed[path: "skipped.missed_catchup_window"]?.numberValue ?? 0
                let overlap = listed[path: "skipped.skip_overlap"]?.numberValue ?? 0
                let started = listed["started"]?.numberValue ?? 0
                #expect(missed + overlap + started == 10, "\(listed)")
                #expect(started == 1)
            }
        }
    }
}
