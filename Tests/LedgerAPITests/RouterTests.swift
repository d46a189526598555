import Foundation
import Hummingbird
import HummingbirdTesting
import LedgerAPI
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Testing

/// The router of the API driven in-process (`app.test(.router)`) over a test stack's real engine, NATS and LMDB,
/// with a token for each role.
struct RouterClient: Sendable {
    static let admin = AccessToken(token: "router-admin", subject: "ada", role: .admin)
    static let `operator` = AccessToken(token: "router-operator", subject: "otto", role: .`operator`)
    static let viewer = AccessToken(token: "router-viewer", subject: "vera", role: .viewer)

    struct Answer {
        var status: Int
        var headers: HTTPFields
        var text: String
        var json: JSONValue { (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text) }
    }

    let client: any TestClientProtocol

    static func router(_ stack: TestStack) -> Router<LedgerRequestContext> {
        buildRouter(
            APIDependencies(
                ledger: stack.ledger, store: stack.store, engine: stack.engine,
                tokens: try! AccessTokens([admin, `operator`, viewer])))
    }

    /// Runs `test` against the router over `stack`.
    static func test(_ stack: TestStack, _ test: @Sendable (RouterClient) async throws -> Void) async throws {
        let app = Application(router: router(stack), logger: testLogger)
        try await app.test(.router) { client in try await test(RouterClient(client: client)) }
    }

    /// `token` nil sends no `Authorization` header.
    func call(
        _ method: HTTPRequest.Method, _ path: String, token: String?, body: JSONValue? = nil
    ) async throws -> Answer {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if body != nil { headers[.contentType] = "application/json" }
        return try await client.execute(
            uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0.compactJSON) }
        ) { response in
            Answer(status: Int(response.status.code), headers: response.headers, text: String(buffer: response.body))
        }
    }

    func call(
        _ method: HTTPRequest.Method, _ path: String, as grant: AccessToken, body: JSONValue? = nil
    ) async throws -> Answer {
        try await call(method, path, token: grant.token, body: body)
    }
}

extension Integration {
    @Suite struct RouterTests {
        /// A caller of the role matrix: no token, an unknown one, or a token with a role.
        enum Caller: CaseIterable, CustomStringConvertible {
            case anonymous, stranger, viewer, `operator`, admin

            var token: String? {
                switch self {
                case .anonymous: return nil
                case .stranger: return "not-a-token"
                case .viewer: return RouterClient.viewer.token
                case .operator: return RouterClient.operator.token
                case .admin: return RouterClient.admin.token
                }
            }
            var role: Role? {
                switch self {
                case .anonymous, .stranger: return nil
                case .viewer: return .viewer
                case .operator: return .`operator`
                case .admin: return .admin
                }
            }
            var description: String { token ?? "no token" }
        }

        /// Every route of the API: the role it needs (nil: public), a request to it that changes nothing, and what a
        /// caller with the role gets for that request (so the handler itself ran).
        struct Route: CustomStringConvertible {
            var method: HTTPRequest.Method
            var template: String
            var path: String
            var role: Role?
            var body: JSONValue? = nil
            var allowed: Int
            var description: String { "\(method) \(path)" }
        }

        static let flow = "calendar-create-event"
        static let routes: [Route] = {
            var stale = Fixtures.calendarCreateEvent.objectValue!
            stale["version"] = 99
            return [
                Route(method: .get, template: "/ping", path: "/ping", role: nil, allowed: 200),
                Route(method: .get, template: "/health", path: "/health", role: nil, allowed: 200),
                Route(method: .get, template: "/openapi.json", path: "/openapi.json", role: nil, allowed: 200),
                Route(method: .get, template: "/metrics", path: "/metrics", role: .viewer, allowed: 200),
                Route(
                    method: .get, template: "/automation/flows", path: "/automation/flows", role: .viewer, allowed: 200),
                Route(
                    method: .post, template: "/automation/flows", path: "/automation/flows", role: .admin,
                    body: Fixtures.calendarCreateEvent, allowed: 409),
                Route(
                    method: .get, template: "/automation/flows/{id}", path: "/automation/flows/\(flow)", role: .viewer,
                    allowed: 200),
                Route(
                    method: .put, template: "/automation/flows/{id}", path: "/automation/flows/\(flow)", role: .admin,
                    body: .object(stale), allowed: 409),
                Route(
                    method: .get, template: "/automation/flows/{id}/versions",
                    path: "/automation/flows/\(flow)/versions",
                    role: .viewer, allowed: 200),
                Route(
                    method: .post, template: "/automation/flows/{id}/activate", path: "/automation/flows/nope/activate",
                    role: .admin, allowed: 404),
                Route(
                    method: .post, template: "/automation/flows/{id}/deactivate",
                    path: "/automation/flows/nope/deactivate", role: .admin, allowed: 404),
                Route(
                    method: .post, template: "/automation/flows/{id}/run", path: "/automation/flows/nope/run",
                    role: .`operator`, body: ["input": [:]], allowed: 404),
                Route(
                    method: .get, template: "/automation/runs", path: "/automation/runs", role: .viewer, allowed: 200),
                Route(
                    method: .get, template: "/automation/runs/{runId}", path: "/automation/runs/nope", role: .viewer,
                    allowed: 404),
                Route(
                    method: .post, template: "/automation/runs/{runId}/cancel", path: "/automation/runs/nope/cancel",
                    role: .`operator`, allowed: 404),
                Route(
                    method: .post, template: "/automation/runs/{runId}/redrive", path: "/automation/runs/nope/redrive",
                    role: .`operator`, allowed: 404),
                Route(method: .get, template: "/automation/dlq", path: "/automation/dlq", role: .viewer, allowed: 200),
                Route(
                    method: .get, template: "/automation/audit", path: "/automation/audit", role: .viewer, allowed: 200),
                Route(
                    method: .get, template: "/automation/schedules", path: "/automation/schedules", role: .viewer,
                    allowed: 200),
                Route(
                    method: .get, template: "/automation/schedules/preview",
                    path: "/automation/schedules/preview?cron=0%209%20*%20*%20*", role: .viewer, allowed: 200),
                Route(
                    method: .post, template: "/automation/schedules/{id}/pause",
                    path: "/automation/schedules/nope/pause", role: .`operator`, allowed: 404),
                Route(
                    method: .post, template: "/automation/schedules/{id}/resume",
                    path: "/automation/schedules/nope/resume", role: .`operator`, allowed: 404),
                Route(
                    method: .post, template: "/automation/schedules/{id}/backfill",
                    path: "/automation/schedules/nope/backfill", role: .`operator`,
                    body: ["from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"], allowed: 404),
                Route(
                    method: .post, template: "/admin/api/automations", path: "/admin/api/automations", role: .admin,
                    body: [
                        "automation_key": .string(flow), "name": "again",
                        "definition": Fixtures.calendarCreateEvent,
                    ], allowed: 409),
                Route(
                    method: .put, template: "/admin/api/automations/{id}", path: "/admin/api/automations/\(flow)",
                    role: .admin, body: ["version": 99, "name": "stale"], allowed: 409),
                Route(
                    method: .post, template: "/admin/api/automations/{id}/activate",
                    path: "/admin/api/automations/nope/activate", role: .admin, allowed: 404),
                Route(
                    method: .post, template: "/admin/api/automations/{id}/deactivate",
                    path: "/admin/api/automations/nope/deactivate", role: .admin, allowed: 404),
                Route(
                    method: .post, template: "/admin/api/automations/{id}/execute",
                    path: "/admin/api/automations/nope/execute", role: .`operator`, body: ["mode": "dry_run"],
                    allowed: 404),
            ]
        }()

        @Test func theTableNamesEveryRouteOfTheRouter() async throws {
            try await withTestStack { stack in
                let registered = Set(RouterClient.router(stack).routes.map { "\($0.method) \($0.path)" })
                #expect(registered == Set(Self.routes.map { "\($0.method) \($0.template)" }))
            }
        }

        /// Every route with every caller: no token or an unknown one is 401 (but on the public routes), a role below
        /// the route's is 403, the route's role or a higher one reaches the handler.
        @Test func everyRouteAnswersEachCallerByRole() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try await RouterClient.test(stack) { client in
                    for route in Self.routes {
                        for caller in Caller.allCases {
                            let answer = try await client.call(
                                route.method, route.path, token: caller.token, body: route.body)
                            let context = "\(route) as \(caller): \(answer.status) \(answer.text)"
                            guard let needed = route.role else {
                                #expect(answer.status == route.allowed, "\(context)")
                                continue
                            }
                            switch caller.role {
                            case nil:
                                #expect(answer.status == 401, "\(context)")
                                #expect(answer.json["code"] == "unauthorized", "\(context)")
                                #expect(answer.headers[.contentType] == "application/problem+json", "\(context)")
                            case let role? where role < needed:
                                #expect(answer.status == 403, "\(context)")
                                #expect(answer.json["code"] == "forbidden", "\(context)")
                                let detail = "This needs the \(needed.rawValue) role; the token has \(role.rawValue)."
                                #expect(answer.json["detail"] == .string(detail), "\(context)")
                            case _?:
                                #expect(answer.status == route.allowed, "\(context)")
                            }
                        }
                    }
                }
            }
        }

        @Test func refusalsKeepTheirProblemBytes() async throws {
            try await withTestStack { stack in
                try await RouterClient.test(stack) { client in
                    let anonymous = try await client.call(.get, "/automation/flows", token: nil)
                    #expect(
                        anonymous.text
                            == #"{"code":"unauthorized","detail":"Send Authorization: Bearer <token> (ledgerflow dev prints one).","status":401,"title":"Unauthorized","type":"https://ledgerflow.dev/problems/unauthorized"}"#
                    )
                    let stranger = try await client.call(.get, "/automation/dlq", token: "nope")
                    #expect(stranger.json["detail"] == "The token is not known to this server.")
                    let viewer = try await client.call(
                        .post, "/automation/flows", as: RouterClient.viewer, body: Fixtures.calendarCreateEvent)
                    #expect(
                        viewer.text
                            == #"{"code":"forbidden","detail":"This needs the admin role; the token has viewer.","status":403,"title":"Forbidden","type":"https://ledgerflow.dev/problems/forbidden"}"#
                    )
                    #expect(viewer.headers[.contentType] == "application/problem+json")
                    let missing = try await client.call(.get, "/automation/flows/nope", as: RouterClient.viewer)
                    #expect(
                        missing.text
                            == #"{"code":"flow_not_found","detail":"No flow has the id \"nope\". List flows with GET /automation/flows.","status":404,"title":"Flow not found","type":"https://ledgerflow.dev/problems/flow_not_found"}"#
                    )
                    // An unknown route is not found before any token is asked for, as before.
                    #expect(try await client.call(.get, "/automation/nothing", token: nil).status == 404)
                    #expect(try await client.call(.get, "/ping", token: nil).text == "pong")
                }
            }
        }

        /// A body past what the server reads is refused like every other request: a problem, not a bare 413.
        @Test func aBodyTooLargeIsAProblem() async throws {
            try await withTestStack { stack in
                try await RouterClient.test(stack) { client in
                    let big: JSONValue = ["input": ["text": .string(String(repeating: "a", count: 1 << 20))]]
                    for (method, path) in [
                        (HTTPRequest.Method.post, "/automation/flows"), (.post, "/automation/flows/\(Self.flow)/run"),
                        (.post, "/automation/runs/nope/cancel"),
                    ] {
                        let answer = try await client.call(method, path, as: RouterClient.admin, body: big)
                        #expect(answer.status == 413, "\(path)")
                        #expect(answer.headers[.contentType] == "application/problem+json", "\(path)")
                        #expect(answer.json["code"] == "too_large", "\(path): \(answer.text.prefix(200))")
                    }
                }
            }
        }

        /// Each role at its own work: an admin manages flows, an operator runs, cancels and redrives (and cannot
        /// change a flow), a viewer reads (and can do nothing else). The token's subject is the actor.
        @Test func eachRoleDoesItsOwnWorkAndNoMore() async throws {
            var settings = CalendarSimulator.Settings()
            settings.latency = .milliseconds(1500)
            settings.failureRate = 1
            settings.permanentFailures = true
            try await withTestStack(calendar: settings) { stack in
                try await RouterClient.test(stack) { client in
                    let (admin, op, viewer) = (RouterClient.admin, RouterClient.operator, RouterClient.viewer)
                    let flow = "/automation/flows/\(Self.flow)"
                    #expect(
                        try await client.call(
                            .post, "/automation/flows", as: viewer, body: Fixtures.calendarCreateEvent
                        ).status == 403)
                    #expect(
                        try await client.call(.post, "/automation/flows", as: op, body: Fixtures.calendarCreateEvent)
                            .status == 403)
                    let created = try await client.call(
                        .post, "/automation/flows", as: admin, body: Fixtures.calendarCreateEvent)
                    #expect(created.status == 201)
                    #expect(created.json["status"] == "draft")
                    #expect(try await client.call(.post, "\(flow)/activate", as: op).status == 403)
                    #expect(try await client.call(.post, "\(flow)/activate", as: admin).json["status"] == "active")
                    var changed = Fixtures.calendarCreateEvent.objectValue!
                    changed["version"] = 1
                    changed["name"] = "renamed"
                    #expect(try await client.call(.put, flow, as: op, body: .object(changed)).status == 403)
                    let updated = try await client.call(.put, flow, as: admin, body: .object(changed))
                    #expect(updated.status == 200)
                    #expect(updated.json["version"] == 2)
                    #expect(try await client.call(.post, "\(flow)/activate", as: admin).json["active_version"] == 2)
                    let versions = try await client.call(.get, "\(flow)/versions", as: viewer)
                    #expect(versions.json["current_version"] == 2)
                    #expect(versions.json[path: "versions.1.actor"] == "ada")

                    // The operator runs and cancels; the run waits for the (slow) calendar meanwhile.
                    let input: JSONValue = [
                        "input": ["title": "Standup", "start": "2026-11-24T10:00:00Z"], "on_behalf_of": "u-1",
                    ]
                    #expect(try await client.call(.post, "\(flow)/run", as: viewer, body: input).status == 403)
                    let started = try await client.call(.post, "\(flow)/run", as: op, body: input)
                    #expect(started.status == 202)
                    let runID = try #require(started.json["run_id"]?.stringValue)
                    let run = try await client.call(.get, "/automation/runs/\(runID)", as: viewer)
                    #expect(run.status == 200)
                    #expect(run.json["actor"] == "otto")
                    #expect(try await client.call(.post, "/automation/runs/\(runID)/cancel", as: viewer).status == 403)
                    let cancelled = try await client.call(
                        .post, "/automation/runs/\(runID)/cancel", as: op, body: ["reason": "moved"])
                    #expect(cancelled.status == 202)
                    #expect(cancelled.json == ["run_id": .string(runID), "status": "CANCELLING"])
                    // Read your writes: the run read right after the answer shows the cancel.
                    let afterCancel = try await client.call(.get, "/automation/runs/\(runID)", as: viewer)
                    #expect(afterCancel.json["cancel_requested_by"] == "otto", "\(afterCancel.text)")
                    try await eventually("the run is cancelled") { try stack.store.run(runID)?.status == .cancelled }
                    // The run is answered as the read model stored it: the body is its LMDB row's bytes (read here
                    // by a scan of the table, not by the route's lookup), and the listing holds the same bytes.
                    let row = try stack.store.dump()[RunStatusModel.table]?.first { $0.key == Array(runID.utf8) }
                    let stored = try #require(row?.value)
                    let served = try await client.call(.get, "/automation/runs/\(runID)", as: viewer)
                    #expect(Array(served.text.utf8) == stored)
                    #expect(served.headers[.contentType] == "application/json")
                    let listing = try await client.call(.get, "/automation/runs?flow_id=\(Self.flow)", as: viewer)
                    #expect(listing.text.contains(String(decoding: stored, as: UTF8.self)))

                    // An admin may run too; the calendar refuses, the run is a dead letter, the operator redrives it.
                    let second = try await client.call(.post, "\(flow)/run", as: admin, body: input)
                    #expect(second.status == 202)
                    let failedID = try #require(second.json["run_id"]?.stringValue)
                    try await eventually("the run fails") { try stack.store.run(failedID)?.status == .failed }
                    let letters = try await client.call(.get, "/automation/dlq", as: viewer)
                    #expect(letters.json["total"] == 1)
                    #expect(letters.json[path: "dead_letters.0.run_id"] == .string(failedID))
                    #expect(
                        try await client.call(.post, "/automation/runs/\(failedID)/redrive", as: viewer).status == 403)
                    let redriven = try await client.call(.post, "/automation/runs/\(failedID)/redrive", as: op)
                    #expect(redriven.status == 202)
                    #expect(redriven.json == ["run_id": .string(failedID)])
                    try await eventually("the redrive is recorded") { try stack.store.run(failedID)?.redrives == 1 }

                    #expect(try await client.call(.post, "\(flow)/deactivate", as: op).status == 403)
                    #expect(
                        try await client.call(.post, "\(flow)/deactivate", as: admin).json["status"] == "deprecated")
                    let listed = try await client.call(.get, "/automation/runs?flow_id=\(Self.flow)", as: viewer)
                    guard case .array(let runs)? = listed.json["runs"] else {
                        Issue.record("no runs in \(listed.text)")
                        return
                    }
                    #expect(runs.count == 2)
                }
            }
        }

        /// A refused run is the same problem over HTTP and over `automation.flow.run`.
        @Test func httpAndNATSRefuseARunWithTheSameProblem() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                #expect(try await stack.http("POST", "/automation/flows/\(Self.flow)/deactivate").0 == 200)
                try await RouterClient.test(stack) { client in
                    for flowID in ["nope", Self.flow] {
                        let input: JSONValue = ["title": "x", "start": "s"]
                        let http = try await client.call(
                            .post, "/automation/flows/\(flowID)/run", as: RouterClient.operator, body: ["input": input])
                        let request = CloudEvent(
                            source: "ops-script", type: EventType.flowRunRequested,
                            data: ["flow_id": .string(flowID), "input": input] as JSONValue)
                        let reply = try await stack.outside.request(
                            subject: Subjects.flowRunRequest, payload: try EventCodec().encode(request),
                            headers: ["Authorization": "Bearer \(TestStack.operatorToken)"], timeout: .seconds(5))
                        let nats = try EventCodec().decode(CloudEvent<JSONValue>.self, from: reply.payload).data[
                            "error"]
                        #expect(http.status == (flowID == "nope" ? 404 : 409))
                        #expect(nats == http.json, "\(flowID): \(nats?.compactJSON ?? "no error") vs \(http.text)")
                    }
                }
            }
        }
    }
}
