import Foundation
import HTTPTypes
import Hummingbird
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerCore
@testable import LedgerEngine

/// A webhook receiver on a free loopback port that checks what Ledgerflow sends: the `Ledgerflow-Signature` (with
/// the secret it shares), the `Idempotency-Key` and the content type. Each path answers as its test says.
final class WebhookReceiver: Sendable {
    struct Delivery: Sendable {
        var path: String
        var body: [UInt8]
        var key: String?
        var contentType: String?
        var verified: Bool
    }

    let port = LocalNATSServer.freePort()
    let secret: String
    let deliveries = Mutex<[Delivery]>([])
    /// Requests of `/flaky` still to fail with 503.
    let failuresLeft = Atomic<Int>(0)
    /// `/down` answers 500 while set.
    let down = Atomic<Bool>(true)
    /// `/hold` keeps its first request until this opens (or a minute passes).
    let gate = Atomic<Bool>(false)
    private let services = RunningServices()

    init(secret: String) { self.secret = secret }

    var base: String { "http://127.0.0.1:\(port)" }

    func received(_ path: String) -> [Delivery] { deliveries.withLock { $0.filter { $0.path == path } } }

    func start() async throws {
        let router = Router()
        router.post("/hook") { request, _ in try await self.record(request, status: .ok) }
        router.post("/flaky") { request, _ in
            let fail = self.failuresLeft.wrappingSubtract(1, ordering: .relaxed).oldValue > 0
            return try await self.record(request, status: fail ? .serviceUnavailable : .ok)
        }
        router.post("/down") { request, _ in
            try await self.record(request, status: self.down.load(ordering: .relaxed) ? .internalServerError : .ok)
        }
        router.post("/hold") { request, _ in
            let response = try await self.record(request, status: .ok)
            if self.received("/hold").count == 1 {
                let deadline = ContinuousClock.now + .seconds(60)
                while !self.gate.load(ordering: .acquiring), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            return response
        }
        router.post("/slow") { request, _ in
            _ = try await self.record(request, status: .ok)
            let deadline = ContinuousClock.now + .seconds(60)
            while !self.gate.load(ordering: .acquiring), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return Response(status: .ok)
        }
        router.post("/redirect") { request, _ in
            _ = try await self.record(request, status: .ok)
            return Response(status: .temporaryRedirect, headers: [.location: "/hook"])
        }
        router.post("/giant") { request, _ in
            _ = try await self.record(request, status: .ok)
            return Response(
                status: .ok, headers: [.contentType: "text/plain"],
                body: ResponseBody { writer in
                    for _ in 0..<64 { try await writer.write(ByteBuffer(repeating: 0x78, count: 64 * 1024)) }
                    try await writer.finish(nil)
                })
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: testLogger)
        services.start([app])
        let client = TestHTTPClient(base: base, timeout: 2)
        try await eventually("the webhook receiver answers") { await client.status("/nothing") == 404 }
    }

    /// Records the request (checking its signature) and answers `status`.
    func record(_ request: Request, status: HTTPResponse.Status) async throws -> Response {
        let body = Array(buffer: try await request.body.collect(upTo: 1 << 20))
        let signature = request.headers[HTTPField.Name(WebhookSignature.header)!] ?? ""
        let verified = WebhookSignature.verify(
            signature, secret: secret, body: body, now: Int64(Date().timeIntervalSince1970))
        deliveries.withLock {
            $0.append(
                Delivery(
                    path: request.uri.path, body: body,
                    key: request.headers[HTTPField.Name("Idempotency-Key")!],
                    contentType: request.headers[.contentType], verified: verified))
        }
        return Response(status: status)
    }

    func stop() async {
        gate.store(true, ordering: .releasing)
        await services.stop()
    }
}

extension Integration {
    /// Seed 003: an immediate acknowledgement, then the final output posted to a webhook, signed; every attempt in
    /// the log; retries, dead letters, redrives and restarts; hostile receivers and URLs.
    @Suite struct WebhookTests {
        static let secret = "hook-secret-\(EventID.make())"

        static var configuration: EngineConfiguration {
            var configuration = TestStack.loopbackAllowed
            configuration.secrets = SecretStore(values: ["hook": secret], environment: [:])
            return configuration
        }

        static func flow(
            _ id: String, url: String, secret: String = "{{secrets.hook}}", retry: JSONValue = ["max_attempts": 3],
            timeout: Double = 10
        ) -> JSONValue {
            var retryPolicy = retry.objectValue ?? [:]
            retryPolicy["initial_ms"] = retryPolicy["initial_ms"] ?? 10
            retryPolicy["max_ms"] = retryPolicy["max_ms"] ?? 50
            return [
                "id": .string(id), "trigger": ["event": "AssistantCommandIssued", "intent": .string(id)],
                "steps": [["id": "report", "action": "transform", "with": ["value": "OT-{{trigger.entities.order}}"]]],
                "output": [
                    "text": "Listo: {{steps.report.output}}", "ack": "Estoy en ello, {{trigger.user.id}}",
                    "webhook": [
                        "url": .string(url), "secret": .string(secret), "retry": .object(retryPolicy),
                        "timeout_sec": .number(timeout),
                    ],
                ],
            ]
        }

        /// A test stack whose engine knows the secret, and a receiver that shares it (both always stopped).
        func withReceiver(_ body: (TestStack, WebhookReceiver) async throws -> Void) async throws {
            try await withTestStack(configuration: Self.configuration) { stack in
                let receiver = WebhookReceiver(secret: Self.secret)
                try await receiver.start()
                do {
                    try await body(stack, receiver)
                } catch {
                    await receiver.stop()
                    throw error
                }
                await receiver.stop()
            }
        }

        /// `count` deliveries, each signed with the shared secret and carrying the run's one idempotency key.
        func expectSigned(
            _ received: [WebhookReceiver.Delivery], count: Int, runID: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) {
            #expect(received.count == count, sourceLocation: sourceLocation)
            #expect(Set(received.compactMap(\.key)) == ["\(runID)/webhook"], sourceLocation: sourceLocation)
            #expect(received.allSatisfy { $0.verified }, "the signature verifies", sourceLocation: sourceLocation)
        }

        func register(_ stack: TestStack, _ flow: JSONValue) async throws {
            let id = try #require(flow["id"]?.stringValue)
            let (created, body) = try await stack.http("POST", "/automation/flows", flow)
            try #require(created == 201, "\(body.compactJSON)")
            try #require(try await stack.http("POST", "/automation/flows/\(id)/activate").0 == 200)
        }

        /// The assistant's classified chat message for flow `intent`; returns the run id its dedup derives.
        @discardableResult
        func chat(_ stack: TestStack, intent: String, id: String = EventID.make()) throws -> String {
            let data: JSONValue = [
                "message_id": .string("m-\(id)"), "intent": .string(intent), "entities": ["order": "7"],
                "user": ["id": "u-1"], "channel": ["type": "whatsapp", "conversation_id": "c-3"],
            ]
            let event = CloudEvent(id: id, source: "assistant", type: EventType.assistantCommandIssued, data: data)
            try stack.outside.publish(
                subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event),
                headers: ["Nats-Msg-Id": id])
            return DerivedID.uuid("\(intent)/\(id)")
        }

        func delivered(_ stack: TestStack, _ runID: String, _ status: StepStatus) async throws -> RunState {
            try await eventually("run \(runID)'s delivery is \(status.rawValue)", timeout: .seconds(60)) {
                try stack.store.run(runID)?.delivery?.status == status
            }
            return try #require(try stack.store.run(runID))
        }

        func outputs(_ stack: TestStack, _ runID: String) async throws -> [(LogMessage, FlowOutputProduced)] {
            try await stack.ledger.read(subject: Subjects.outputProduced).compactMap { message in
                let event = try JSONDecoder().decode(CloudEvent<FlowOutputProduced>.self, from: Data(message.payload))
                return event.data.run_id == runID ? (message, event.data) : nil
            }
        }

        func types(_ stack: TestStack, _ runID: String) async throws -> [String] {
            try await stack.log().filter { $0.subject == Subjects.run(runID) }.compactMap { $0.event?.type }
        }

        @Test func aChatRunAcknowledgesAtOnceThenPostsItsSignedOutputToTheWebhook() async throws {
            try await withReceiver { stack, receiver in
                try await register(stack, Self.flow("report-failure", url: "\(receiver.base)/hook"))
                let runID = try chat(stack, intent: "report-failure", id: "msg-1")
                let run = try await delivered(stack, runID, .succeeded)
                #expect(run.status == .succeeded)
                #expect(run.output == ["text": "Listo: OT-7"], "the run's output is the final one")
                #expect(run.ack?.text == "Estoy en ello, u-1")

                // Two outputs for the chat relay: the acknowledgement first, then the final one; both name the
                // chat message and its channel.
                let outputs = try await outputs(stack, runID)
                try #require(outputs.count == 2)
                #expect(outputs.map(\.1.kind) == [.ack, .final])
                #expect(outputs[0].0.sequence < outputs[1].0.sequence)
                #expect(outputs.map(\.1.text) == ["Estoy en ello, u-1", "Listo: OT-7"])
                for (_, output) in outputs {
                    #expect(output.message_id == "m-msg-1")
                    #expect(output.channel == ["type": "whatsapp", "conversation_id": "c-3"])
                }
                let types = try await types(stack, runID)
                let ackAt = try #require(types.firstIndex(of: EventType.runAcknowledged))
                let stepAt = try #require(types.firstIndex(of: EventType.stepAttemptSucceeded))
                #expect(ackAt < stepAt, "acknowledged before any step")
                #expect(
                    Array(types.suffix(3)) == [
                        EventType.runSucceeded, EventType.deliveryStarted, EventType.deliverySucceeded,
                    ])

                // The receiver got the final output's stored bytes, signed, once, with the run's key.
                let received = receiver.received("/hook")
                try #require(received.count == 1)
                #expect(received[0].verified, "the signature verifies with the shared secret")
                #expect(received[0].body == outputs[1].0.payload, "exactly the bytes recorded in the log")
                #expect(received[0].key == "\(runID)/webhook")
                #expect(received[0].contentType == "application/cloudevents+json")
                #expect(run.delivery?.attempts.map(\.http_status) == [200])

                // A manual run of the chat flow names its signal as the message and a manual channel.
                let (accepted, answer) = try await stack.http(
                    "POST", "/automation/flows/report-failure/run",
                    ["input": ["order": "8"], "mode": "live_run", "on_behalf_of": "u-2"])
                try #require(accepted == 202, "\(answer.compactJSON)")
                let manualID = try #require(answer["run_id"]?.stringValue)
                let manual = try await delivered(stack, manualID, .succeeded)
                let manualOutputs = try await self.outputs(stack, manualID)
                #expect(manualOutputs.count == 2)
                #expect(manualOutputs.first?.1.text == "Estoy en ello, u-2")
                for (_, output) in manualOutputs {
                    #expect(output.message_id != nil)
                    #expect(output.message_id == manual.message_id)
                    #expect(output.channel?["type"] == "manual")
                }

                // A dry run records its acknowledgement, sends nothing and delivers nothing.
                let (dryAccepted, dryAnswer) = try await stack.http(
                    "POST", "/automation/flows/report-failure/run",
                    ["input": ["order": "9"], "mode": "dry_run", "on_behalf_of": "u-2"])
                try #require(dryAccepted == 202, "\(dryAnswer.compactJSON)")
                let dryID = try #require(dryAnswer["run_id"]?.stringValue)
                try await eventually("the dry run ends") { try stack.store.run(dryID)?.status == .succeeded }
                let dry = try #require(try stack.store.run(dryID))
                #expect(dry.mode == .dry)
                #expect(dry.ack?.text != nil)
                #expect(dry.delivery == nil)
                #expect(try await self.outputs(stack, dryID).isEmpty)
                #expect(receiver.received("/hook").count == 2)

                // The secret is nowhere in the log or the read models.
                for message in try await stack.ledger.read(subject: nil) {
                    #expect(
                        !String(decoding: message.payload, as: UTF8.self).contains(Self.secret), "\(message.subject)")
                }
                for (table, rows) in try stack.store.dump() {
                    for row in rows {
                        #expect(!String(decoding: row.key + row.value, as: UTF8.self).contains(Self.secret), "\(table)")
                    }
                }
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func aReceiverFailingTwiceGetsTheSameKeyOnThreeRecordedAttempts() async throws {
            try await withReceiver { stack, receiver in
                receiver.failuresLeft.store(2, ordering: .relaxed)
                try await register(stack, Self.flow("flaky", url: "\(receiver.base)/flaky"))
                let runID = try chat(stack, intent: "flaky")
                let run = try await delivered(stack, runID, .succeeded)
                let attempts = try #require(run.delivery?.attempts)
                #expect(attempts.map(\.attempt) == [1, 2, 3])
                #expect(attempts.map(\.http_status) == [503, 503, 200])
                #expect(attempts.map(\.status) == [.failed, .failed, .succeeded])
                #expect(attempts.dropLast().allSatisfy { $0.retry_at != nil })
                let received = receiver.received("/flaky")
                expectSigned(received, count: 3, runID: runID)
                let types = try await types(stack, runID)
                #expect(types.filter { $0 == EventType.deliveryStarted }.count == 3)
                #expect(types.filter { $0 == EventType.deliveryFailed }.count == 2)
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func aDeadLetterIsListedAndARedriveDeliversWithTheSameKey() async throws {
            try await withReceiver { stack, receiver in
                try await register(
                    stack, Self.flow("down", url: "\(receiver.base)/down", retry: ["max_attempts": 2]))
                let runID = try chat(stack, intent: "down")
                let dead = try await delivered(stack, runID, .failed)
                #expect(dead.status == .succeeded, "the run's own work succeeded; its delivery is the dead letter")
                #expect(dead.delivery?.attempts.map(\.http_status) == [500, 500])
                let (listed, letters) = try await stack.http("GET", "/automation/dlq")
                #expect(listed == 200)
                let letter = try #require(
                    letters["dead_letters"]?.arrayValue?.first { $0["run_id"]?.stringValue == runID })
                #expect(letter["kind"] == "webhook")
                #expect(letter["error"]?["code"] == "http_500")
                #expect(letter["delivery"]?["url"]?.stringValue == "\(receiver.base)/down")
                #expect(letter["attempts"]?.arrayValue?.count == 2)

                receiver.down.store(false, ordering: .relaxed)
                let (redriven, answer) = try await stack.http("POST", "/automation/runs/\(runID)/redrive", [:])
                #expect(redriven == 202, "\(answer.compactJSON)")
                let run = try await delivered(stack, runID, .succeeded)
                #expect(run.delivery?.redrives == 1)
                #expect(run.delivery?.attempts.map(\.http_status) == [500, 500, 200])
                let received = receiver.received("/down")
                expectSigned(received, count: 3, runID: runID)
                #expect(try await types(stack, runID).contains(EventType.deliveryRedriven))
                let (_, after) = try await stack.http("GET", "/automation/dlq")
                #expect(after["dead_letters"]?.arrayValue?.contains { $0["run_id"]?.stringValue == runID } == false)
                // A delivered run is not redriven again.
                #expect(try await stack.http("POST", "/automation/runs/\(runID)/redrive", [:]).0 == 409)
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func aDeliveryInProgressContinuesAfterARestart() async throws {
            try await withReceiver { stack, receiver in
                try await register(stack, Self.flow("held", url: "\(receiver.base)/hold", timeout: 30))
                let runID = try chat(stack, intent: "held")
                try await eventually("the receiver holds the first delivery") { receiver.received("/hold").count == 1 }
                #expect(try stack.store.run(runID)?.delivery?.status == .running)
                await stack.stopEngine()
                stack.restartEngine()
                let run = try await delivered(stack, runID, .succeeded)
                receiver.gate.store(true, ordering: .releasing)
                let received = receiver.received("/hold")
                expectSigned(received, count: 2, runID: runID)
                #expect(run.delivery?.attempts.last?.http_status == 200)
                #expect(try await types(stack, runID).contains(EventType.runClaimed))
                try await stack.expectRebuildEqualsLive()
            }
        }

        @Test func hostileReceiversAndURLsEndInDeadLettersWithoutBlockingOtherRuns() async throws {
            try await withReceiver { stack, receiver in
                let once: JSONValue = ["max_attempts": 1]
                let cases: [(String, JSONValue, StepErrorKind)] = [
                    ("slow", Self.flow("slow", url: "\(receiver.base)/slow", retry: once, timeout: 1), .timeout),
                    ("redirect", Self.flow("redirect", url: "\(receiver.base)/redirect", retry: once), .http(307)),
                    ("giant", Self.flow("giant", url: "\(receiver.base)/giant", retry: once), .outputTooLarge),
                    (
                        "metadata", Self.flow("metadata", url: "http://169.254.169.254/latest/", retry: once),
                        .forbiddenAddress
                    ),
                    (
                        "no-secret",
                        Self.flow("no-secret", url: "\(receiver.base)/hook", secret: "{{secrets.not_set}}"),
                        .badRequest
                    ),
                ]
                var runs: [(String, String, StepErrorKind)] = []
                for (id, flow, kind) in cases {
                    try await register(stack, flow)
                    runs.append((id, try chat(stack, intent: id), kind))
                }
                // Meanwhile an ordinary run is delivered.
                try await register(stack, Self.flow("fine", url: "\(receiver.base)/hook"))
                let fine = try chat(stack, intent: "fine")
                _ = try await delivered(stack, fine, .succeeded)
                for (id, runID, kind) in runs {
                    let run = try await delivered(stack, runID, .failed)
                    let error = try #require(run.delivery?.attempts.last?.error, "\(id)")
                    #expect(error.kind == kind, "\(id): \(error)")
                    #expect(run.delivery?.attempts.count == 1, "\(id) is final at once")
                }
                let messages = try runs.map { run in
                    try #require(try stack.store.run(run.1)?.delivery?.attempts.last?.error?.message)
                }
                #expect(messages[1].contains("set output.webhook.url to the final URL"), "\(messages[1])")
                #expect(messages[2].contains("short body"), "\(messages[2])")
                #expect(messages[3].contains("refused"), "\(messages[3])")
                let missing = messages[4]
                #expect(missing.contains("not_set") && missing.contains("LEDGERFLOW_SECRET_NOT_SET"), "\(missing)")
                #expect(receiver.received("/hook").count == 1, "only the fine run was posted to /hook")
                // Registration refuses what can never be delivered.
                let (refused, problem) = try await stack.http(
                    "POST", "/automation/flows", Self.flow("ftp", url: "ftp://hooks.example.com/in"))
                #expect(refused == 422)
                #expect(problem[path: "errors.0.path"] == "output.webhook.url")
                var badAck = Self.flow("bad-ack", url: "\(receiver.base)/hook").objectValue!
                badAck["output"] = ["text": "x", "ack": ["not": "a string"]]
                let (refusedAck, ackProblem) = try await stack.http("POST", "/automation/flows", .object(badAck))
                #expect(refusedAck == 422)
                #expect(ackProblem[path: "errors.0.path"] == "output.ack")
                try await stack.expectRebuildEqualsLive()
            }
        }
    }
}

extension Integration.WebhookTests {
    /// `examples/flows/reminder-with-ack.json` end to end: the acknowledgement reaches the user's channel before the
    /// calendar has answered, then the final reply.
    @Test func theReminderExampleAcknowledgesAtOnceThenReplies() async throws {
        try await withTestStack { stack in
            let flow = try Fixtures.flow("reminder-with-ack")
            try #require(try await stack.http("POST", "/automation/flows", flow).0 == 201)
            try #require(try await stack.http("POST", "/automation/flows/reminder-with-ack/activate").0 == 200)
            try stack.publishCommand(id: "remind-1", title: "Dentista", intent: "calendar.remind")
            let run = try #require(try await stack.waitForRuns(1).first)
            let outputs = try await stack.log().filter { $0.subject == Subjects.outputProduced }.compactMap(\.event)
            #expect(outputs.compactMap { $0.data["kind"]?.stringValue } == ["ack", "final"])
            #expect(outputs.first?.data["text"] == "Estoy en ello: un recordatorio para «Dentista».")
            #expect(outputs.last?.data["text"] == "Listo, te lo recordaré: Recordatorio: Dentista.")
            #expect(outputs.allSatisfy { $0.data["message_id"] == "m-remind-1" })
            #expect(outputs.allSatisfy { $0.data["channel"] == ["type": "chat", "conversation_id": "c-9"] })
            // The acknowledgement was out before the calendar command was answered.
            let log = try await stack.log()
            let ack = try #require(log.firstIndex { $0.event?.id == "\(run.run_id)/ack" })
            let created = try #require(log.firstIndex { $0.subject == Subjects.calendarCreated })
            #expect(ack < created)
        }
    }

    /// `examples/flows/deliver-to-webhook.json` (seed 003) end to end, its URL pointed at a receiver of the test's own
    /// that checks the signature with the secret `GATEWAY_WEBHOOK`.
    @Test func theFailureReportExampleAnswersAtOnceThenPostsItsSignedReplyToTheGateway() async throws {
        let secret = "gateway-\(EventID.make())"
        var configuration = TestStack.loopbackAllowed
        configuration.secrets = SecretStore(values: ["GATEWAY_WEBHOOK": secret], environment: [:])
        try await withTestStack(configuration: configuration) { stack in
            let receiver = WebhookReceiver(secret: secret)
            try await receiver.start()
            defer { Task { await receiver.stop() } }
            var flow = try Fixtures.flow("deliver-to-webhook").objectValue!
            var output = flow["output"]!.objectValue!
            var webhook = output["webhook"]!.objectValue!
            #expect(webhook["url"] == "http://127.0.0.1:9000/replies")
            webhook["url"] = .string("\(receiver.base)/hook")
            output["webhook"] = .object(webhook)
            flow["output"] = .object(output)
            try #require(try await stack.http("POST", "/automation/flows", .object(flow)).0 == 201)
            try #require(try await stack.http("POST", "/automation/flows/failure-report/activate").0 == 200)
            let data: JSONValue = [
                "message_id": "m-failure", "intent": "maintenance.report_failure",
                "entities": ["asset": "Bomba 3", "problem": "vibración"], "user": ["id": "u-2"],
                "channel": ["type": "whatsapp", "conversation_id": "wa-7"],
            ]
            let event = CloudEvent(
                id: "failure-1", source: "gateway", type: EventType.assistantCommandIssued, data: data)
            try stack.outside.publish(
                subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(event))
            let run = try #require(try await stack.waitForRuns(1).first)
            try await eventually("the signed delivery") { receiver.received("/hook").count == 1 }
            let delivery = try #require(receiver.received("/hook").first)
            #expect(delivery.verified)
            #expect(delivery.key == "\(run.run_id)/webhook")
            let posted = try JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(delivery.body))
            #expect(posted.type == EventType.outputProduced)
            #expect(posted.data["message_id"] == "m-failure")
            #expect(
                posted.data["text"]?.stringValue?.hasPrefix("Avería de Bomba 3 registrada con prioridad high") == true)
            let ack = try await stack.log().first { $0.event?.id == "\(run.run_id)/ack" }?.event
            #expect(ack?.data["text"] == "Recibido: estoy registrando la avería de Bomba 3.")
            try await eventually("the delivery recorded") {
                try stack.store.run(run.run_id)?.delivery?.status.rawValue == "SUCCEEDED"
            }
        }
    }
}
