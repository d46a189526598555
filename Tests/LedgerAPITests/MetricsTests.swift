import LedgerAPI
import LedgerCore
import LedgerEngine
import LedgerNATS
import LedgerTestSupport
import Testing

extension Integration {
    /// `GET /metrics` of a running stack: what the engine counted (runs, step attempts, refusals), the gauges of the
    /// read models and the log, and the HTTP requests by route template.
    @Suite struct MetricsTests {
        /// One `http.request` step to an address no policy allows: the attempt fails at once, for good.
        static let failing: JSONValue = [
            "id": "metrics-fails", "trigger": ["manual": true],
            "steps": [
                ["id": "call", "action": "http.request", "with": ["method": "GET", "url": "http://169.254.169.254/x"]]
            ],
            "output": ["text": "called"],
            "defaults": ["retry": ["max_attempts": 1], "timeout_sec": 30],
        ]

        func page(_ stack: TestStack) async throws -> PrometheusText {
            let (status, text) = try await stack.client.text("GET", "/metrics")
            try #require(status == 200, "\(text)")
            return PrometheusText(text)
        }

        @Test func theMetricsPageCountsRunsStepsRefusalsAndRequests() async throws {
            try await withTestStack { stack in
                // A run that succeeds (started by a command, as the assistant would).
                try await stack.activateExample()
                try stack.publishCommand()
                let succeeded = try #require(try await stack.waitForRuns(1).first)

                // A run whose only step fails.
                let (created, body) = try await stack.http("POST", "/automation/flows", Self.failing)
                try #require(created == 201, "\(body.compactJSON)")
                try #require(try await stack.http("POST", "/automation/flows/metrics-fails/activate").0 == 200)
                let (accepted, answer) = try await stack.http(
                    "POST", "/automation/flows/metrics-fails/run", ["input": [:]])
                try #require(accepted == 202, "\(answer.compactJSON)")
                let failed = try #require(answer["run_id"]?.stringValue)
                try await eventually("the failing run is FAILED") { try stack.store.run(failed)?.status == .failed }

                // An inbound message that is not a CloudEvent: refused and recorded.
                try stack.outside.publish(subject: Subjects.assistantCommandIssued, payload: Array("{not json".utf8))
                try await eventually("the refusal is counted") {
                    try await page(stack).value(#"ledgerflow_inbound_rejected_total{reason="refused"}"#) == 1
                }

                // Requests: two runs by id (one route), three paths no route has, one without a token.
                #expect(try await stack.http("GET", "/automation/runs/\(succeeded.run_id)").0 == 200)
                #expect(try await stack.http("GET", "/automation/runs/\(failed)").0 == 200)
                for path in ["/no-such-a", "/no-such-b", "/automation/no-such-c/1"] {
                    #expect(try await stack.http("GET", path).0 == 404)
                }
                #expect(try await stack.client.text("GET", "/metrics", token: .none).0 == 401)

                let metrics = try await page(stack)
                // Runs, by flow and status.
                #expect(metrics.value(#"ledgerflow_runs_started_total{flow_id="calendar-create-event"}"#) == 1)
                #expect(metrics.value(#"ledgerflow_runs_started_total{flow_id="metrics-fails"}"#) == 1)
                #expect(
                    metrics.value(
                        #"ledgerflow_runs_finished_total{flow_id="calendar-create-event",status="SUCCEEDED"}"#)
                        == 1)
                #expect(
                    metrics.value(#"ledgerflow_runs_finished_total{flow_id="calendar-create-event",status="FAILED"}"#)
                        == 0)
                #expect(metrics.value(#"ledgerflow_runs_finished_total{flow_id="metrics-fails",status="FAILED"}"#) == 1)
                #expect(
                    metrics.value(#"ledgerflow_runs_finished_total{flow_id="metrics-fails",status="SUCCEEDED"}"#) == 0)
                #expect(metrics.series(of: "ledgerflow_runs_finished_total").count == 6)
                #expect(!metrics.text.contains(succeeded.run_id) && !metrics.text.contains(failed), "no run id label")

                // Step attempts, by action and outcome, and their latency.
                #expect(
                    metrics.value(
                        #"ledgerflow_step_attempts_total{action="calendar.schedule_event",outcome="succeeded"}"#) == 1)
                #expect(
                    metrics.value(#"ledgerflow_step_attempts_total{action="calendar.schedule_event",outcome="failed"}"#)
                        == 0)
                #expect(metrics.value(#"ledgerflow_step_attempts_total{action="http.request",outcome="failed"}"#) == 1)
                #expect(
                    metrics.value(#"ledgerflow_step_attempts_total{action="http.request",outcome="succeeded"}"#) == 0)
                #expect(metrics.type(of: "ledgerflow_step_duration_seconds") == "histogram")
                #expect(
                    metrics.value(#"ledgerflow_step_duration_seconds_count{action="calendar.schedule_event"}"#) == 1)
                #expect(metrics.value(#"ledgerflow_step_duration_seconds_count{action="http.request"}"#) == 1)
                #expect(
                    metrics.value(#"ledgerflow_step_duration_seconds_bucket{action="http.request",le="+Inf"}"#) == 1)
                #expect((metrics.value("ledgerflow_run_events_appended_total") ?? 0) > 0)

                // Inbound refusals by class; the process and the read models.
                #expect(metrics.value(#"ledgerflow_inbound_rejected_total{reason="refused"}"#) == 1)
                #expect(metrics.value(#"ledgerflow_inbound_rejected_total{reason="delivery_limit"}"#) == 0)
                #expect(metrics.value("ledgerflow_inbound_retries_total") == 0)
                #expect(metrics.value("ledgerflow_nats_connected") == 1)
                #expect(metrics.value("ledgerflow_projection_skipped_total") == 0)
                #expect(metrics.value("ledgerflow_projection_states_read_back_total") != nil)
                let checkpoint = try #require(metrics.value("ledgerflow_projection_checkpoint"))
                let last = try #require(metrics.value("ledgerflow_log_last_sequence"))
                let lag = try #require(metrics.value("ledgerflow_projection_lag"))
                #expect(checkpoint > 0 && last >= checkpoint && lag == last - checkpoint)
                #expect(metrics.value("ledgerflow_runs_in_memory") != nil)
                for family in [
                    "ledgerflow_projection_lag", "ledgerflow_projection_checkpoint", "ledgerflow_runs_in_memory",
                ] {
                    #expect(metrics.type(of: family) == "gauge")
                }
                #expect(metrics.type(of: "ledgerflow_runs_finished_total") == "counter")

                // HTTP requests by route template, never by path.
                #expect(
                    metrics.value(
                        #"ledgerflow_http_requests_total{route="/automation/runs/{runId}",method="GET",status="200"}"#)
                        == 2)
                #expect(
                    metrics.value(#"ledgerflow_http_requests_total{route="unmatched",method="GET",status="404"}"#) == 3)
                #expect(
                    metrics.value(#"ledgerflow_http_requests_total{route="/metrics",method="GET",status="401"}"#) == 1)
                #expect(
                    metrics.value(
                        #"ledgerflow_http_requests_total{route="/automation/flows",method="POST",status="201"}"#) == 2)
                #expect(!metrics.text.contains("no-such"), "a path no route has is not a label")
                let routes = metrics.series(of: "ledgerflow_http_requests_total")
                #expect(routes.count == Set(routes).count)
            }
        }

        /// The value of a schedule counter of `flow` (and `skipClass`), whatever the order of the labels.
        static func scheduleValue(
            _ page: PrometheusText, _ name: String, _ flow: String, _ skipClass: String? = nil
        )
            -> Double?
        {
            page.samples.first { sample in
                sample.series.hasPrefix("\(name){") && sample.series.contains(#"flow_id="\#(flow)""#)
                    && (skipClass.map { sample.series.contains(#"class="\#($0)""#) } ?? true)
            }?.value
        }

        /// The schedule counters come from the schedules read model, not from what one process did: the page shows
        /// the read model's counts by class, and a second process (its own read models, not the scheduler's leader
        /// or maybe it is) shows the same totals; scraping again adds nothing.
        @Test func scheduleCountersAreTheReadModelsTotalsOnEveryProcess() async throws {
            try await withTestStack { stack in
                let flow: JSONValue = [
                    "id": "metered", "trigger": ["interval": "1s", "overlap": "allow_all"],
                    "steps": [["id": "a", "action": "transform", "with": ["value": 1]]],
                ]
                #expect(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/metered/activate").0 == 200)
                func listed() async throws -> JSONValue? {
                    try await stack.http("GET", "/automation/schedules").1["schedules"]?.arrayValue?.first {
                        $0["flow_id"] == "metered"
                    }
                }
                try await eventually("two firings started") { (try await listed()?["started"]?.numberValue ?? 0) >= 2 }
                #expect(try await stack.http("POST", "/automation/schedules/metered/pause").0 == 200)
                try await eventually("two paused firings") {
                    (try await listed()?[path: "skipped.paused"]?.numberValue ?? 0) >= 2
                }
                // Deactivated: one inactive firing, then nothing more is recorded and the counts stand still.
                #expect(try await stack.http("POST", "/automation/flows/metered/deactivate").0 == 200)
                try await eventually("the inactive firing is recorded") {
                    (try await listed()?[path: "skipped.inactive"]?.numberValue ?? 0) == 1
                }
                let model = try #require(try await listed())
                let scraped = try await page(stack)
                let skipped = EngineMetrics.Name.scheduleSkipped
                for skipClass in ["skip_overlap", "missed_catchup_window", "paused", "inactive"] {
                    #expect(
                        Self.scheduleValue(scraped, skipped, "metered", skipClass)
                            == model[path: "skipped.\(skipClass)"]?.numberValue,
                        "\(skipClass): \(scraped.series(of: skipped))")
                }
                #expect(
                    Self.scheduleValue(scraped, EngineMetrics.Name.scheduleStarted, "metered")
                        == model["started"]?.numberValue)
                #expect(scraped.type(of: skipped) == "counter")
                let late = try #require(Self.scheduleValue(scraped, EngineMetrics.Name.scheduleLateness, "metered"))
                #expect(late >= 0)

                // A second process with read models of its own reports the same totals.
                let other = try await stack.addEngine()
                let position = stack.engine.projectionPosition
                try await eventually("the second process's read models reach the same position") {
                    other.projectionPosition >= position
                }
                other.sampleScheduleMetrics()
                let second = PrometheusText(String(decoding: other.metrics.render(), as: UTF8.self))
                for name in [skipped, EngineMetrics.Name.scheduleStarted, EngineMetrics.Name.scheduleLateness] {
                    let mine = scraped.series(of: name).filter { $0.contains(#"flow_id="metered""#) }.sorted()
                    #expect(!mine.isEmpty)
                    for series in mine {
                        #expect(second.value(series) == scraped.value(series), "\(series)")
                    }
                }
                // Scraping again adds nothing.
                let again = try await page(stack)
                for series in scraped.series(of: skipped) { #expect(again.value(series) == scraped.value(series)) }
            }
        }
    }
}
