import LedgerCore
import LedgerTestSupport
import Testing

@testable import LedgerEngine

/// The engine's metrics, counted without a stack: each `EngineMetrics` keeps its own registry (many engines, and
/// many tests, in one process), and what an appended event counts.
@Suite struct EngineMetricsTests {
    static let flow = FlowDefinition(
        id: "f", trigger: FlowTrigger(event: "AssistantCommandIssued", intent: "x"),
        steps: [
            StepDefinition(
                id: "create", action: "calendar.schedule_event", with: ["title": "t", "start": "s"],
                compensate: CompensationDefinition(action: "calendar.cancel_event", with: ["event_id": "e"]))
        ],
        output: ["text": "done"])

    static func failed(_ kind: StepErrorKind, _ started: String, _ finished: String) -> StepAttemptFailed {
        StepAttemptFailed(
            step_id: "create", attempt: 1, error: StepError(kind: kind, message: "m", retryable: false),
            started_at: started, finished_at: finished, retry_at: nil)
    }

    @Test func eachEngineCountsIntoItsOwnRegistry() {
        let one = EngineMetrics()
        let two = EngineMetrics()
        one.runStarted(flowID: "f")
        one.runStarted(flowID: "f")
        two.runStarted(flowID: "f")
        #expect(
            PrometheusText(String(decoding: one.render(), as: UTF8.self)).value(
                #"ledgerflow_runs_started_total{flow_id="f"}"#) == 2)
        #expect(
            PrometheusText(String(decoding: two.render(), as: UTF8.self)).value(
                #"ledgerflow_runs_started_total{flow_id="f"}"#) == 1)
    }

    @Test func appendedEventsCountRunsAttemptsAndTheirLatency() throws {
        let metrics = EngineMetrics()
        let t0 = "2026-11-20T05:45:45.000Z"
        let appended: [LedgerEvent.Body] = [
            .stepAttemptFailed(Self.failed(.timeout, t0, "2026-11-20T05:45:47.000Z")),
            .stepAttemptFailed(Self.failed(.circuitOpen, t0, t0)),
            .stepAttemptFailed(Self.failed(StepErrorKind("whatever_a_service_says"), t0, t0)),
            .stepAttemptSucceeded(
                StepAttemptSucceeded(
                    step_id: "create", attempt: 2, output: [:], started_at: t0, finished_at: "2026-11-20T05:45:45.020Z")
            ),
            .compensationFailed(Self.failed(.unavailable, t0, t0)),
            .runFailed(FlowRunFailed(error: RunError(code: "c", message: "m"))),
            .stepSkipped(StepSkipped(step_id: "x", reason: "r")),
        ]
        for body in appended { metrics.appended(body, flowID: "f", definition: Self.flow) }
        metrics.rejected(.deliveryLimit)
        let page = PrometheusText(String(decoding: metrics.render(), as: UTF8.self))
        func attempts(_ outcome: String) -> Double? {
            page.value(#"ledgerflow_step_attempts_total{action="calendar.schedule_event",outcome="\#(outcome)"}"#)
        }
        #expect(attempts("timed_out") == 1)
        #expect(attempts("circuit_open") == 1)
        #expect(attempts("failed") == 1)
        #expect(attempts("succeeded") == 1)
        #expect(attempts("cancelled") == 0)
        #expect(
            page.value(#"ledgerflow_compensation_attempts_total{action="calendar.cancel_event",outcome="failed"}"#) == 1
        )
        #expect(page.value(#"ledgerflow_runs_finished_total{flow_id="f",status="FAILED"}"#) == 1)
        #expect(page.value(#"ledgerflow_runs_finished_total{flow_id="f",status="SUCCEEDED"}"#) == 0)
        #expect(page.value("ledgerflow_run_events_appended_total") == Double(appended.count))
        #expect(page.value(#"ledgerflow_inbound_rejected_total{reason="delivery_limit"}"#) == 1)
        // Four attempts of the step: 2 s, 0, 0 and 20 ms.
        let histogram = #"ledgerflow_step_duration_seconds"#
        #expect(page.value(#"\#(histogram)_count{action="calendar.schedule_event"}"#) == 4)
        let sum = try #require(page.value(#"\#(histogram)_sum{action="calendar.schedule_event"}"#))
        #expect(abs(sum - 2.02) < 0.001)
        #expect(page.value(#"\#(histogram)_bucket{action="calendar.schedule_event",le="0.025"}"#) == 3)
        #expect(page.value(#"\#(histogram)_bucket{action="calendar.schedule_event",le="1.0"}"#) == 3)
        #expect(page.value(#"\#(histogram)_bucket{action="calendar.schedule_event",le="2.5"}"#) == 4)
    }

    @Test func theSkippedAndReadBackCountersFollowTheStoresCountsOnceEach() {
        let metrics = EngineMetrics()
        func skipped() -> Double? {
            PrometheusText(String(decoding: metrics.render(), as: UTF8.self)).value(
                "ledgerflow_projection_skipped_total")
        }
        for (count, expected) in [(3, 3.0), (3, 3), (2, 3), (7, 7)] {
            metrics.sample(
                runsInMemory: 0, checkpoint: 10, skipped: count, statesReadBack: count * 2, lastSequence: 12,
                natsConnected: true)
            #expect(skipped() == expected)
            #expect(
                PrometheusText(String(decoding: metrics.render(), as: UTF8.self)).value(
                    "ledgerflow_projection_states_read_back_total") == expected * 2)
        }
        let page = PrometheusText(String(decoding: metrics.render(), as: UTF8.self))
        #expect(page.value("ledgerflow_projection_lag") == 2)
        metrics.sample(
            runsInMemory: 1, checkpoint: 12, skipped: 7, statesReadBack: 0, lastSequence: nil, natsConnected: false)
        let later = PrometheusText(String(decoding: metrics.render(), as: UTF8.self))
        #expect(later.value("ledgerflow_projection_lag") == 2, "unknown while the log is away: left as it was")
        #expect(later.value("ledgerflow_nats_connected") == 0)
        #expect(later.value("ledgerflow_runs_in_memory") == 1)
        #expect(
            later.value("ledgerflow_projection_states_read_back_total") == 14, "a count that went down adds nothing")
    }
}
