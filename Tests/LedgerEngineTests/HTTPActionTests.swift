import Foundation
import HTTPTypes
import Hummingbird
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import LedgerCore
@testable import LedgerEngine

/// A small HTTP service on a free loopback port, for `http.request` to call: it echoes what it received, sets a
/// cookie, redirects, and streams bodies larger than a step's output may be.
final class TestHTTPService: Sendable {
    let port = LocalNATSServer.freePort()
    /// Requests received, by path.
    let received = Mutex<[String: Int]>([:])
    /// Chunks of the large body written so far, and whether it was ever written to its end.
    let bigChunksWritten = Atomic<Int>(0)
    let bigFinished = Atomic<Bool>(false)
    /// The large bodies stop before their last chunk until this opens.
    let gate = Atomic<Bool>(false)
    static let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
    private let running = Mutex<(ServiceGroup, Task<Void, any Error>)?>(nil)

    var base: String { "http://127.0.0.1:\(port)" }

    func count(_ path: String) -> Int { received.withLock { $0[path] ?? 0 } }

    func start() async throws {
        let router = Router()
        router.middlewares.add(CountingMiddleware(service: self))
        router.get("/echo") { request, _ -> Response in
            let fields: [String: JSONValue] = [
                "host": request.head.authority.map(JSONValue.string) ?? .null,
                "cookie": request.headers[.cookie].map(JSONValue.string) ?? .null,
                "authorization": request.headers[.authorization].map(JSONValue.string) ?? .null,
                "idempotency_key": request.headers[HTTPField.Name("Idempotency-Key")!].map(JSONValue.string) ?? .null,
                "on_behalf_of": request.headers[HTTPField.Name("Ledgerflow-On-Behalf-Of")!].map(JSONValue.string)
                    ?? .null,
                "method": .string(request.method.rawValue),
            ]
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: JSONValue.object(fields).compactJSON)))
        }
        router.get("/set-cookie") { _, _ -> Response in
            Response(
                status: .ok, headers: [.setCookie: "session=abc123; Path=/"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: "cookie set")))
        }
        router.get("/redirect") { _, _ -> Response in
            Response(status: .found, headers: [.location: "/echo"])
        }
        router.get("/redirect-to-metadata") { _, _ -> Response in
            Response(status: .found, headers: [.location: "http://169.254.169.254/latest/meta-data/"])
        }
        router.get("/redirect-other-origin") { _, _ -> Response in
            Response(status: .seeOther, headers: [.location: "http://localhost:\(self.port)/echo"])
        }
        router.get("/redirect-loop") { _, _ -> Response in
            Response(status: .temporaryRedirect, headers: [.location: "/redirect-loop"])
        }
        router.get("/big") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: self.bigBody(contentLength: nil))
        }
        router.get("/big-declared") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain"], body: self.bigBody(contentLength: 11 * 64 * 1024))
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: testLogger)
        running.withLock { $0 = TestStack.run([app]) }
        let client = TestHTTPClient(base: base, timeout: 2)
        try await eventually("the test HTTP service answers") { await client.status("/echo") == 200 }
        received.withLock { $0.removeAll() }
    }

    /// Ten 64 KiB chunks (640 KiB, more than a step's output may be), then it waits for the gate before the last.
    func bigBody(contentLength: Int?) -> ResponseBody {
        ResponseBody(contentLength: contentLength) { writer in
            for _ in 0..<10 {
                try await writer.write(Self.chunk)
                self.bigChunksWritten.add(1, ordering: .relaxed)
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while !self.gate.load(ordering: .acquiring), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await writer.write(Self.chunk)
            try await writer.finish(nil)
            self.bigFinished.store(true, ordering: .releasing)
        }
    }

    func stop() async {
        gate.store(true, ordering: .releasing)
        guard let (group, task) = running.withLock({ $0.take() }) else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    struct CountingMiddleware: RouterMiddleware {
        typealias Context = BasicRequestContext
        let service: TestHTTPService
        func handle(
            _ request: Request, context: Context, next: (Request, Context) async throws -> Response
        ) async throws -> Response {
            service.received.withLock { $0[request.uri.path, default: 0] += 1 }
            return try await next(request, context)
        }
    }
}

extension Integration {
    /// `http.request` and `emit` cannot be turned against the system (issue 5), and `http.request` is bounded in
    /// memory and time (issue 4), over the real engine, a real nats-server and a real HTTP service.
    @Suite struct HTTPActionTests {
        static func flow(_ id: String, _ steps: [JSONValue]) -> JSONValue {
            [
                "id": .string(id), "trigger": ["manual": true], "steps": .array(steps), "output": ["text": "ok"],
                "defaults": ["retry": ["max_attempts": 1], "timeout_sec": 30],
            ]
        }

        static func call(
            _ id: String, _ url: String, dependsOn: [String] = [], extra: [String: JSONValue] = [:]
        ) -> JSONValue {
            var with: [String: JSONValue] = ["method": "GET", "url": .string(url)]
            with.merge(extra) { _, new in new }
            return [
                "id": .string(id), "action": "http.request", "with": .object(with),
                "depends_on": .array(dependsOn.map { .string($0) }),
            ]
        }

        /// Registers and activates the flow, runs it by hand and waits for the run to end.
        func run(
            _ stack: TestStack, _ flow: JSONValue, input: JSONValue = [:], mode: String = "live_run"
        ) async throws -> RunState {
            let id = try #require(flow["id"]?.stringValue)
            let (created, body) = try await stack.http("POST", "/automation/flows", flow)
            try #require(created == 201, "\(body.compactJSON)")
            try #require(try await stack.http("POST", "/automation/flows/\(id)/activate").0 == 200)
            let (accepted, answer) = try await stack.http(
                "POST", "/automation/flows/\(id)/run", ["input": input, "mode": .string(mode)])
            try #require(accepted == 202, "\(answer.compactJSON)")
            let runID = try #require(answer["run_id"]?.stringValue)
            try await eventually("run \(runID) ends", timeout: .seconds(60)) {
                try stack.store.run(runID)?.status.isTerminal == true
            }
            return try #require(try stack.store.run(runID))
        }

        func error(_ run: RunState, _ step: String) -> StepError? { run.step(step)?.attempts.last?.error }

        @Test func redirectsAreFollowedOnlyWhenAskedAndEveryHopIsChecked() async throws {
            try await withTestStack { stack in
                let service = TestHTTPService()
                try await service.start()
                defer { Task { await service.stop() } }

                // Not followed: the 3xx is the outcome, judged by expected_status.
                let recorded = try await run(
                    stack,
                    Self.flow(
                        "redirect-recorded",
                        [
                            Self.call("plain", "\(service.base)/redirect", extra: ["expected_status": [302]])
                        ]))
                #expect(recorded.status == .succeeded)
                #expect(recorded.step("plain")?.output?["status"] == 302)
                #expect(service.count("/echo") == 0, "the redirect was not followed")

                let refused = try await run(
                    stack, Self.flow("redirect-refused", [Self.call("plain", "\(service.base)/redirect")]))
                #expect(refused.status == .failed)
                #expect(error(refused, "plain")?.kind == .http(302))
                #expect(error(refused, "plain")?.retryable == false)
                #expect(
                    error(refused, "plain")?.message.contains("follow_redirects") == true,
                    "\(error(refused, "plain")?.message ?? "")")

                // Followed when asked; no cookie from an earlier request is sent; the Host header names what the URL named.
                let followed = try await run(
                    stack,
                    Self.flow(
                        "redirect-followed",
                        [
                            Self.call("cookie", "\(service.base)/set-cookie"),
                            Self.call(
                                "follow", "\(service.base)/redirect", dependsOn: ["cookie"],
                                extra: ["follow_redirects": true]),
                        ]))
                #expect(followed.status == .succeeded, "\(followed.error.map { "\($0)" } ?? "")")
                let echoed = followed.step("follow")?.output?["body"]
                #expect(followed.step("follow")?.output?["status"] == 200)
                #expect(echoed?["host"] == .string("127.0.0.1:\(service.port)"))
                #expect(echoed?["cookie"] == .null, "no cookie kept from the earlier request")
                #expect(echoed?["idempotency_key"]?.stringValue?.hasSuffix("/follow") == true)
                #expect(service.count("/echo") == 1)
                service.received.withLock { $0.removeAll() }

                // A hop to the metadata address is refused before connecting, like a first request would be.
                let metadata = try await run(
                    stack,
                    Self.flow(
                        "redirect-metadata",
                        [
                            Self.call(
                                "follow", "\(service.base)/redirect-to-metadata", extra: ["follow_redirects": true])
                        ]))
                #expect(metadata.status == .failed)
                #expect(error(metadata, "follow")?.kind == .forbiddenAddress)
                #expect(error(metadata, "follow")?.message.contains("169.254.169.254") == true)

                // Credentials are not carried to another origin (localhost is another origin than 127.0.0.1).
                let crossing = try await run(
                    stack,
                    Self.flow(
                        "redirect-cross-origin",
                        [
                            Self.call(
                                "follow", "\(service.base)/redirect-other-origin",
                                extra: ["follow_redirects": true, "headers": ["Authorization": "Bearer t"]])
                        ]))
                #expect(crossing.step("follow")?.output?[path: "body.host"] == .string("localhost:\(service.port)"))
                #expect(crossing.step("follow")?.output?[path: "body.authorization"] == .null)

                // At most five hops.
                let loop = try await run(
                    stack,
                    Self.flow(
                        "redirect-loop",
                        [
                            Self.call("follow", "\(service.base)/redirect-loop", extra: ["follow_redirects": true])
                        ]))
                #expect(error(loop, "follow")?.kind == .tooManyRedirects)
                #expect(service.count("/redirect-loop") == HTTPAction.maxRedirects + 1)
            }
        }

        @Test func aResponseOverTheLimitFailsWhileItIsStillArriving() async throws {
            try await withTestStack { stack in
                let service = TestHTTPService()
                try await service.start()
                defer { Task { await service.stop() } }

                // The service sends 640 KiB and then holds its last chunk back until the gate opens, which happens only
                // after the step has failed: a client that buffered the whole body first would still be waiting (and
                // fail with a timeout instead).
                let streamed = try await run(stack, Self.flow("too-large", [Self.call("big", "\(service.base)/big")]))
                #expect(streamed.status == .failed)
                #expect(error(streamed, "big")?.kind == .outputTooLarge)
                #expect(error(streamed, "big")?.retryable == false)
                #expect(error(streamed, "big")?.message.contains("\(Limits.stepOutputBytes)") == true)
                let finishedAfterStreamed = service.bigFinished.load(ordering: .acquiring)
                #expect(!finishedAfterStreamed, "the step failed before the service finished sending")

                // A declared Content-Length over the limit fails before the body is read.
                let declared = try await run(
                    stack, Self.flow("too-large-declared", [Self.call("big", "\(service.base)/big-declared")]))
                #expect(error(declared, "big")?.kind == .outputTooLarge)
                #expect(error(declared, "big")?.message.contains("Content-Length") == true)
                let finishedAfterDeclared = service.bigFinished.load(ordering: .acquiring)
                #expect(!finishedAfterDeclared)
            }
        }

        @Test func loopbackAndMetadataAddressesAreRefusedWithoutTheAllowlist() async throws {
            try await withTestStack(configuration: EngineConfiguration()) { stack in
                let service = TestHTTPService()
                try await service.start()
                defer { Task { await service.stop() } }
                let port = service.port
                let targets = [
                    "http://127.0.0.1:\(port)/echo", "http://localhost:\(port)/echo", "http://2130706433:\(port)/echo",
                    "http://0x7f.1:\(port)/echo", "http://[::ffff:7f00:1]:\(port)/echo", "http://[::1]:\(port)/echo",
                    "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:\(port)/echo", "http://10.0.0.1/",
                ]
                // One run per target: a run stops at its first failed step.
                var messages: [String] = []
                for (i, target) in targets.enumerated() {
                    let refused = try await run(stack, Self.flow("refused-\(i)", [Self.call("call", target)]))
                    let failure = error(refused, "call")
                    #expect(refused.status == .failed)
                    #expect(failure?.kind == .forbiddenAddress, "\(target): \(failure.map { "\($0)" } ?? "no error")")
                    #expect(failure?.retryable == false)
                    #expect(
                        failure?.message.contains("--http-allow") == true
                            && failure?.message.contains("LEDGERFLOW_HTTP_ALLOW") == true)
                    messages.append(failure?.message ?? "")
                }
                #expect(messages[1].contains("localhost resolves to"), "\(messages[1])")
                #expect(messages[6].contains("169.254.169.254") && messages[6].contains("metadata"), "\(messages[6])")
                #expect(service.count("/echo") == 0, "nothing reached the service")
            }
        }

        @Test func theAllowlistLetsANamedTargetThroughAndNothingElse() async throws {
            let service = TestHTTPService()
            var configuration = EngineConfiguration()
            configuration.outbound = OutboundPolicy(
                httpAllow: try HTTPAllowEntry.parseList("LOCALHOST:\(service.port)"))
            try await withTestStack(configuration: configuration) { stack in
                try await service.start()
                defer { Task { await service.stop() } }
                let allowed = try await run(
                    stack,
                    Self.flow(
                        "allowlisted",
                        [
                            Self.call(
                                "named", "http://localhost:\(service.port)/echo",
                                extra: ["headers": ["Authorization": "Bearer t"]])
                        ]))
                #expect(
                    allowed.step("named")?.output?["status"] == 200, "\(allowed.step("named").map { "\($0)" } ?? "")")
                #expect(allowed.step("named")?.output?[path: "body.host"] == .string("localhost:\(service.port)"))
                #expect(allowed.step("named")?.output?[path: "body.authorization"] == "Bearer t")
                let otherPort = try await run(
                    stack,
                    Self.flow("other-port", [Self.call("call", "http://localhost:\(LocalNATSServer.freePort())/echo")]))
                #expect(error(otherPort, "call")?.kind == .forbiddenAddress, "the entry names one port")
                let byAddress = try await run(
                    stack, Self.flow("by-address", [Self.call("call", "http://127.0.0.1:\(service.port)/echo")]))
                #expect(
                    error(byAddress, "call")?.kind == .forbiddenAddress, "the entry names the host, not its address")
                // HTTPS goes through a client pinned to the checked address (and shut down after the request): here the
                // plain-HTTP service cannot complete a TLS handshake, so the attempt fails as unavailable, not refused
                // (AsyncHTTPClient retries a failed connection until its 10 s connect timeout: this step takes that long).
                let tls = try await run(
                    stack, Self.flow("pinned-tls", [Self.call("call", "https://localhost:\(service.port)/echo")]))
                #expect(error(tls, "call")?.kind == .unavailable, "\(error(tls, "call").map { "\($0)" } ?? "no error")")
                #expect(error(tls, "call")?.retryable == true)
                #expect(service.count("/echo") == 1)
            }
        }

        @Test func emitRefusesTheLogAPIsInboxesWildcardsAndTheEnginesOwnSubjects() async throws {
            try await withTestStack { stack in
                let subjects = ["ledger.run.x", "$JS.API.STREAM.LIST", "_INBOX.abc", "a.*", "orders.{{input.kind}}"]
                let definition = Self.flow(
                    "emit-refused",
                    subjects.enumerated().map { i, subject in
                        [
                            "id": .string("e\(i)"), "action": "emit",
                            "with": ["subject": .string(subject), "type": "Forged", "data": [:]],
                        ]
                    })
                let (status, problem) = try await stack.http("POST", "/automation/flows", definition)
                #expect(status == 422)
                guard case .array(let errors)? = problem["errors"] else {
                    Issue.record("no errors in \(problem.compactJSON)")
                    return
                }
                let paths = errors.compactMap { $0["path"]?.stringValue }
                for i in subjects.indices {
                    #expect(paths.contains("steps[\(i)].with.subject"), "\(problem.compactJSON)")
                }

                // A subject the engine consumes, and one it publishes its own outputs and commands on (a flow must
                // not forge a run's output for the chat, nor a calendar command with a command id of its choosing),
                // pass registration (the engine's settings may allow them) and are refused when the step runs.
                let forgeries: [(flow: String, subject: String, type: String, rule: String)] = [
                    ("emit-inbound", Subjects.assistantCommandIssued, "AssistantCommandIssued", "engine consumes"),
                    ("emit-outbound", Subjects.outputProduced, "FlowOutputProduced", "commands or outputs"),
                ]
                for forgery in forgeries {
                    let step: JSONValue = [
                        "id": "forge", "action": "emit",
                        "with": [
                            "subject": .string(forgery.subject), "type": .string(forgery.type),
                            "data": ["intent": "x", "run_id": "someone-else", "text": "forged"],
                        ],
                    ]
                    let refused = try await run(stack, Self.flow(forgery.flow, [step]))
                    #expect(refused.status == .failed, "\(forgery.subject)")
                    #expect(error(refused, "forge")?.kind == .forbiddenSubject, "\(forgery.subject)")
                    let message = error(refused, "forge")?.message ?? ""
                    #expect(message.contains(forgery.rule) && message.contains("--emit-allow"), "\(message)")
                    #expect(try await stack.ledger.read(subject: forgery.subject).isEmpty, "nothing was published")
                }

                let ordinary = try await run(
                    stack,
                    Self.flow(
                        "emit-ok",
                        [
                            [
                                "id": "ok", "action": "emit",
                                "with": [
                                    "subject": "crm.contact.synced", "type": "CrmContactSynced", "data": ["a": 1],
                                ],
                            ]
                        ]))
                #expect(ordinary.status == .succeeded)
            }
        }

        /// `{{secrets.NAME}}` in a header is resolved only when the call is made: the target gets the value, and
        /// nothing in the log or in any LMDB table holds it (not even the target's echo of it, which is redacted).
        @Test func aSecretReachesTheTargetAndNothingThatIsRecorded() async throws {
            let secret = "s3cr3t-CRM-value-\(EventID.make())"
            var configuration = TestStack.loopbackAllowed
            configuration.secrets = SecretStore(values: ["crm_token": secret], environment: [:])
            try await withTestStack(configuration: configuration) { stack in
                let service = TestHTTPService()
                try await service.start()
                defer { Task { await service.stop() } }
                var flow = Self.flow(
                    "with-secret",
                    [
                        Self.call(
                            "call", "\(service.base)/echo",
                            extra: ["headers": ["Authorization": "Bearer {{secrets.crm_token}}"]])
                    ]
                ).objectValue!
                flow["run_as"] = "service"
                let run = try await run(stack, .object(flow))
                #expect(run.status == .succeeded)
                let output = try #require(run.step("call")?.output)
                // The target got the value (its echo, redacted before it was recorded, says so).
                #expect(output[path: "body.authorization"] == "Bearer [redacted]", "\(output.compactJSON)")
                #expect(output[path: "body.on_behalf_of"] == "service:ledgerflow")
                let started = try await stack.log().compactMap(\.event).first {
                    $0.type == EventType.stepAttemptStarted
                }
                #expect(started?.data[path: "request.headers.Authorization"] == "Bearer {{secrets.crm_token}}")
                // Every message of the stream, every LMDB table: the value is nowhere.
                for message in try await stack.ledger.read(subject: nil) {
                    #expect(!String(decoding: message.payload, as: UTF8.self).contains(secret), "\(message.subject)")
                }
                for (table, rows) in try stack.store.dump() {
                    for row in rows {
                        let text = String(decoding: row.key + row.value, as: UTF8.self)
                        #expect(!text.contains(secret), "LMDB table \(table)")
                    }
                }
                // Run data can never name a secret: a header rendered from input is sent as it is.
                var injected = Self.flow(
                    "injected",
                    [Self.call("call", "\(service.base)/echo", extra: ["headers": ["Authorization": "{{input.note}}"]])]
                ).objectValue!
                injected["run_as"] = "service"
                let sneaky = try await self.run(stack, .object(injected), input: ["note": "{{secrets.crm_token}}"])
                #expect(sneaky.step("call")?.output?[path: "body.authorization"] == "{{secrets.crm_token}}")
                // A header that holds a secret holds nothing else from the run.
                let (mixed, mixedProblem) = try await stack.http(
                    "POST", "/automation/flows",
                    Self.flow(
                        "mixed",
                        [
                            Self.call(
                                "call", "https://example.com",
                                extra: ["headers": ["Authorization": "{{secrets.crm_token}} {{input.x}}"]])
                        ]))
                #expect(mixed == 422)
                #expect(mixedProblem[path: "errors.0.path"] == "steps[0].with.headers.Authorization")
                // A secret that is not set fails the step for good, naming where to set it.
                var missing = Self.flow(
                    "missing-secret",
                    [
                        Self.call(
                            "call", "\(service.base)/echo", extra: ["headers": ["X-Key": "{{secrets.not_there}}"]])
                    ]
                ).objectValue!
                missing["run_as"] = "service"
                let failed = try await self.run(stack, .object(missing))
                #expect(failed.status == .failed)
                #expect(error(failed, "call")?.message.contains("LEDGERFLOW_SECRET_NOT_THERE") == true)
                #expect(service.count("/echo") == 2)
                // Secrets only where they cannot be recorded: a transform, an output, a condition are refused.
                for (where_, step) in [
                    (
                        "steps[0].with.value",
                        ["id": "t", "action": "transform", "with": ["value": "{{secrets.crm_token}}"]]
                    ),
                    ("steps[0].with.url", Self.call("t", "https://example.com/{{secrets.crm_token}}")),
                ] as [(String, JSONValue)] {
                    let (status, problem) = try await stack.http(
                        "POST", "/automation/flows", Self.flow("refused-\(where_.count)", [step]))
                    #expect(status == 422)
                    #expect(problem[path: "errors.0.path"] == .string(where_), "\(problem.compactJSON)")
                }
            }
        }

        @Test func aDryRunRecordsNoHeaderValues() async throws {
            try await withTestStack { stack in
                let flow = Self.flow(
                    "dry-headers",
                    [
                        Self.call(
                            "call", "https://api.example.com/contacts",
                            extra: [
                                "method": "POST",
                                "headers": ["Authorization": "Bearer {{input.token}}", "X-Api-Key": "literal-key-123"],
                                "body": ["a": 1],
                            ])
                    ])
                let run = try await run(stack, flow, input: ["token": "s3cret-value"], mode: "dry_run")
                #expect(run.status == .succeeded)
                let output = try #require(run.step("call")?.output)
                #expect(output["simulated"] == true)
                #expect(output["headers"] == ["Authorization": "[redacted]", "X-Api-Key": "[redacted]"])
                #expect(!output.compactJSON.contains("s3cret-value") && !output.compactJSON.contains("literal-key-123"))
                let (_, shown) = try await stack.http("GET", "/automation/runs/\(run.run_id)")
                #expect(shown[path: "steps.0.output.headers.Authorization"] == "[redacted]")
            }
        }
    }
}

/// What a step's `with` may hold, tried broken, huge and hostile (no network: refused before any connection).
@Suite struct HTTPActionInputTests {
    func execution(_ with: JSONValue) -> StepExecution {
        StepExecution(
            runID: "r", target: .step("s"), attempt: 1, action: "http.request", request: with, idempotencyKey: "r/s",
            commandID: "r/s/1",
            deadline: Date().addingTimeInterval(30), onBehalfOf: .null)
    }

    func refusal(_ with: JSONValue) -> StepError? {
        do {
            _ = try HTTPAction.request(from: execution(with))
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("http://0x7f.1:8080/a?b=c", "127.0.0.1", 8080, "/a?b=c"), ("HTTP://EXAMPLE.COM./x", "example.com", 80, "/x"),
        ("https://[::ffff:7f00:1]/", "::ffff:7f00:1", 443, "/"), ("http://2130706433", "127.0.0.1", 80, "/"),
        ("http://api.example.com:8443/p%20q", "api.example.com", 8443, "/p%20q"),
    ])
    func targetsAreNormalised(url: String, host: String, port: Int, path: String) throws {
        let target = try Target(url)
        #expect(target.host == host)
        #expect(target.port == port)
        #expect(target.pathAndQuery == path)
    }

    @Test(arguments: [
        "ftp://example.com/", "javascript:alert(1)", "http:///path", "http://user:pw@example.com/",
        "http://user@example.com/",
        "http://exa mple.com/", "http://1.2.3.999/", "http://example.com:99999/", "http://[fe80::1%25eth0]/",
        "http://ex%41mple.com/",
        "http://" + String(repeating: "a", count: 9000) + ".com/", "", "not a url", "http://foo.0x7f/",
        "file:///etc/passwd",
    ])
    func hostileURLsAreRefusedBeforeAnyConnection(url: String) {
        #expect(throws: StepError.self) { try Target(url) }
        do {
            _ = try Target(url)
        } catch {
            #expect(error.kind == .badRequest && !error.retryable)
            #expect(error.message.contains("http.request url"), "says which input: \(error.message)")
        }
    }

    @Test func brokenStepInputsAreRefusedWithWhatToDo() {
        let url: JSONValue = "http://example.com/"
        let cases: [(JSONValue, String)] = [
            (["url": url, "expected_status": 1e300], "expected_status"),
            (["url": url, "expected_status": [200, 99.5]], "expected_status"),
            (["url": url, "expected_status": -1], "expected_status"),
            (["url": url, "expected_status": "200"], "expected_status"),
            (["url": url, "method": "GET /admin HTTP/1.1\r\n"], "with.method"),
            (["url": url, "method": "CONNECT"], "CONNECT"),
            (["url": url, "method": 5], "with.method"),
            (["url": url, "headers": ["X-A": "a\r\nHost: evil"]], "line break"),
            (["url": url, "headers": ["Bad Name": "a"]], "header name"),
            (["url": url, "headers": ["Host": "evil.example"]], "Host"),
            (["url": url, "headers": ["Content-Length": "0"]], "Content-Length"),
            (["url": url, "headers": ["X-Big": .string(String(repeating: "a", count: 9000))]], "at most"),
            (["url": url, "headers": ["X-Obj": ["a": 1]]], "must be a string"),
            (["url": url, "headers": "Authorization: x"], "must be an object"),
            (["url": url, "follow_redirects": "yes"], "follow_redirects"),
            (["method": "GET"], "with.url"),
        ]
        for (with, mention) in cases {
            let error = refusal(with)
            #expect(error?.kind == .badRequest, "\(with.compactJSON)")
            #expect(
                error?.message.contains(mention) == true, "\(error?.message ?? "accepted") should mention \(mention)")
        }
        #expect(
            refusal([
                "url": url, "expected_status": [200, 302], "method": "post", "headers": ["X-N": 5, "X-B": true],
                "body": ["a": 1],
            ]) == nil)
    }

    @Test func brokenAllowlistsStopServeAndDevWithWhatToWrite() throws {
        for (arguments, mention) in [
            (["serve", "--http-allow", "bad host", "--nats-url", "nats://127.0.0.1:1"], "HOST[:PORT]"),
            (["serve", "--http-allow", "localhost:99999", "--nats-url", "nats://127.0.0.1:1"], "1 to 65535"),
            (["dev", "--http-allow", "10.0.0.0/33", "--nats-url", "nats://127.0.0.1:1"], "0 to 32"),
            (["dev", "--emit-allow", "calendar..event", "--nats-url", "nats://127.0.0.1:1"], "empty token"),
        ] {
            let (status, output) = try ledgerflow(arguments)
            #expect(status != 0, "\(arguments)")
            #expect(output.contains(mention), "\(output)")
        }
    }
}
