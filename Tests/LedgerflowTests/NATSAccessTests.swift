import Foundation
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerNATS
import LedgerTestSupport
import Testing

/// The command line's NATS credentials and TLS options, checked before anything is opened.
@Suite struct NATSAccessOptionsTests {
    static let unreachable = ["--nats-url", "nats://127.0.0.1:1"]

    @Test func everyCommandThatConnectsToNATSTakesTheOptionsAndRefusesACertificateWithoutItsKey() throws {
        let directory = TemporaryDirectory("cli-tls")
        let certificate = "\(directory.path)/client-cert.pem"
        try "not checked here".write(toFile: certificate, atomically: true, encoding: .utf8)
        for command in [
            ["serve"], ["dev", "--nats-url", "nats://127.0.0.1:1"], ["tail"], ["verify"], ["replay", "run-1"],
            ["publish", "assistant.command.issued", "{}"], ["projections", "rebuild"], ["calendar-simulator"],
            ["simulate", "calendar"],
            ["simulate", "discovery"], ["simulate", "notifications"],
        ] {
            let (status, output) = try ledgerflow(command + Self.unreachable + ["--nats-tls-cert", certificate])
            #expect(status != 0, "\(command): \(output)")
            #expect(output.contains("--nats-tls-cert needs --nats-tls-key"), "\(command): \(output)")
        }
    }

    @Test func badCombinationsAndUnreadableFilesAreRefusedSayingWhatToDoWithoutShowingSecrets() throws {
        let secret = "pw-never-shown-42"
        let cases: [(arguments: [String], environment: [String: String], expected: String)] = [
            (
                ["--nats-creds", "/nonexistent/x.creds"], [:],
                "cannot read --nats-creds /nonexistent/x.creds: no such file"
            ),
            (
                [], ["LEDGERFLOW_NATS_CREDS": "/nonexistent/y.creds"],
                "cannot read LEDGERFLOW_NATS_CREDS /nonexistent/y.creds: no such file"
            ),
            (["--nats-nkey", "/tmp"], [:], "cannot read --nats-nkey /tmp: it is a directory"),
            (["--nats-tls-key", "/etc/hostname"], [:], "--nats-tls-key needs --nats-tls-cert"),
            (["--nats-password", secret], [:], "--nats-password needs --nats-user"),
            ([], ["LEDGERFLOW_NATS_PASSWORD": secret], "LEDGERFLOW_NATS_PASSWORD needs --nats-user"),
            (["--nats-user", "ledgerflow"], [:], "--nats-user needs --nats-password"),
            (
                ["--nats-user", "ledgerflow", "--nats-password", secret, "--nats-token", secret], [:],
                "are two ways of logging in to NATS; give only one"
            ),
        ]
        for (arguments, environment, expected) in cases {
            let (status, output) = try ledgerflow(["tail"] + Self.unreachable + arguments, environment: environment)
            #expect(status != 0, "\(arguments) \(environment): \(output)")
            #expect(output.contains(expected), "\(arguments) \(environment): \(output)")
            #expect(!output.contains(secret), "a secret was printed: \(output)")
        }
        let (status, output) = try ledgerflow([
            "tail", "--nats-url", "nats://ledgerflow:\(secret)@127.0.0.1:1", "--nats-token", "t",
        ])
        #expect(status != 0)
        #expect(output.contains("nats://ledgerflow:***@127.0.0.1:1 carries credentials"), "\(output)")
        #expect(!output.contains(secret), "\(output)")
    }

    @Test func devWithoutNATSURLRefusesCredentialsItsOwnServerDoesNotNeed() throws {
        let (status, output) = try ledgerflow(["dev", "--nats-user", "ledgerflow", "--nats-password", "x"])
        #expect(status != 0)
        #expect(output.contains("--nats-user is for a NATS server given with --nats-url"), "\(output)")
    }
}

/// `examples/nats/server.conf` as it is: each service logs in as its own user, only Ledgerflow writes the log.
@Suite(.timeLimit(.minutes(5)))
struct ExampleServerConfigurationTests {
    static let ledgerflow = NATSConnectOptions(user: "ledgerflow", password: "change-me-ledgerflow")
    static let calendar = NATSConnectOptions(user: "calendar", password: "change-me-calendar")
    static let discovery = NATSConnectOptions(user: "discovery", password: "change-me-discovery")
    static let assistant = NATSCredentials(user: "assistant", password: "change-me-assistant")

    static func withExampleServer<R>(
        isolation: isolated (any Actor)? = #isolation, _ body: (LocalNATSServer) async throws -> R
    ) async throws -> R {
        let directory = TemporaryDirectory("example-conf")
        let configuration = try exampleServerConfiguration(storeDirectory: "\(directory.path)/store")
        return try await withConfiguredServer(configuration, directory: directory, body)
    }

    @Test func aServiceCannotForgeTheLogAndLedgerflowCanWriteIt() async throws {
        try await Self.withExampleServer { server in
            let ledger = try await Ledger.open(
                url: server.url, clientName: "example-conf", setup: .createOrUpdate, connectOptions: Self.ledgerflow,
                logger: testLogger)
            defer { ledger.close() }
            let run = "run-forged"
            let event = CloudEvent(
                id: "forged-1", source: "calendar", type: EventType.runSucceeded, runid: run,
                data: JSONValue.object([:]))
            let payload = try EventCodec().encode(event)

            // The calendar service publishing a run's event: the server refuses it, the log does not have it.
            let calendar = try await NATSConnection.connect(
                url: server.url, name: "forger", logger: testLogger,
                credentials: NATSCredentials(user: "calendar", password: "change-me-calendar"))
            defer { calendar.close() }
            try calendar.publish(subject: Subjects.run(run), payload: payload)
            try await calendar.flush()
            try await eventually("the server reports the violation") { calendar.lastAsyncError != nil }
            let violation = calendar.lastAsyncError ?? ""
            #expect(violation.contains("Permissions Violation"), "\(violation)")
            #expect(violation.contains("ledger.run.\(run)"), "\(violation)")
            // It may publish its own answers.
            try calendar.publish(subject: Subjects.calendarCreated, payload: payload)
            try await calendar.flush()
            // Nor may it append through JetStream (the API is Ledgerflow's).
            let refusedAPI = await #expect(throws: NATSError.self) {
                _ = try await calendar.request(
                    subject: "$JS.API.STREAM.INFO.LEDGER", payload: [], timeout: .seconds(2))
            }
            #expect(refusedAPI != nil)

            // Ledgerflow appends; the log holds its event and the calendar's answer, not the forgery.
            let sent = try await ledger.send(
                CloudEvent(
                    id: "real-1", source: "ledgerflow", type: EventType.runSucceeded, runid: "run-real",
                    data: JSONValue.object([:])),
                on: Subjects.run("run-real"))
            #expect(sent != nil)
            try await eventually("both messages are in the log") { try await ledger.lastSequence() >= 2 }
            let subjects = try await ledger.read(subject: nil).map(\.subject)
            #expect(subjects.contains("ledger.run.run-real"))
            #expect(subjects.contains(Subjects.calendarCreated))
            #expect(!subjects.contains(Subjects.run(run)), "\(subjects)")

            // The assistant may say what was asked, and nothing else.
            let assistant = try await NATSConnection.connect(
                url: server.url, name: "assistant", logger: testLogger, credentials: Self.assistant)
            defer { assistant.close() }
            try assistant.publish(subject: Subjects.calendarSchedule, payload: payload)
            try await assistant.flush()
            try await eventually("the server refuses the assistant's calendar command") {
                assistant.lastAsyncError?.contains("Permissions Violation") == true
            }
        }
    }

    /// `ledgerflow serve` logged in as the example's ledgerflow user (password from the environment), the calendar
    /// and discovery simulators as theirs, the assistant as its own: a run that uses both services succeeds, and
    /// the server refused nothing Ledgerflow did.
    @Test func serveRunsAFlowWithEveryServiceLoggedInAsItsOwnUser() async throws {
        try await Self.withExampleServer { server in
            let data = TemporaryDirectory("serve-auth")
            let serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: server.url, dataDirectory: data.path, logLevel: "info",
                arguments: ["--nats-user", "ledgerflow"],
                environment: ["LEDGERFLOW_NATS_PASSWORD": "change-me-ledgerflow"])
            defer { serve.kill() }
            let calendar = try await CalendarSimulator.connect(
                url: server.url, connectOptions: Self.calendar, logger: testLogger)
            let discovery = try await DiscoverySimulator.connect(
                url: server.url, connectOptions: Self.discovery, logger: testLogger)
            let assistant = try await NATSConnection.connect(
                url: server.url, name: "assistant", logger: testLogger, credentials: Self.assistant)
            defer { assistant.close() }
            let calendarTask = Task { try await calendar.run() }
            defer { calendarTask.cancel() }
            let discoveryTask = Task { try await discovery.run() }
            defer { discoveryTask.cancel() }
            try await serve.waitReady()

            let (created, _) = try await serve.http.json("POST", "/automation/flows", Fixtures.calendarCreateEvent)
            #expect(created == 201)
            let (activated, _) = try await serve.http.json("POST", "/automation/flows/calendar-create-event/activate")
            #expect(activated == 200)
            let id = EventID.make()
            let command = CloudEvent(
                id: id, source: "assistant", type: EventType.assistantCommandIssued,
                data: JSONValue.object([
                    "message_id": .string("m-\(id)"), "intent": "calendar.create_event",
                    "entities": ["title": "Dentist", "start": "2026-11-24T10:00:00Z", "with_suggestions": true],
                    "user": ["id": "u-1"], "channel": ["type": "chat", "conversation_id": "c-9"],
                ]))
            try assistant.publish(
                subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(command),
                headers: ["Nats-Msg-Id": id])
            try await assistant.flush()
            #expect(assistant.lastAsyncError == nil, "\(assistant.lastAsyncError ?? "")")

            try await eventually("the run succeeds", timeout: .seconds(60)) {
                let (_, list) = try await serve.http.json("GET", "/automation/runs?status=SUCCEEDED&limit=10")
                if case .array(let items)? = list["runs"] { return items.count >= 1 }
                return false
            }
            #expect(calendar.eventsCreated == 1)
            #expect(discovery.requestsServed >= 1, "the run asked discovery (with_suggestions)")
            let log = (try? String(contentsOfFile: serve.logFile, encoding: .utf8)) ?? ""
            #expect(!log.contains("Permissions Violation"), "the example refused something Ledgerflow does:\n\(log)")
            #expect(!log.contains("change-me-ledgerflow"))
            serve.stop()
        }
    }

    @Test func serveWithAWrongPasswordStopsSayingWhatToCheckInsteadOfWaiting() async throws {
        try await Self.withExampleServer { server in
            let data = TemporaryDirectory("serve-auth-wrong")
            let password = "wrong-password-77"
            let serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: server.url, dataDirectory: data.path, logLevel: "info",
                arguments: ["--nats-user", "ledgerflow", "--nats-password", password])
            defer { serve.kill() }
            try await eventually("serve exits", timeout: .seconds(60)) { !serve.process.isRunning }
            #expect(serve.process.terminationStatus != 0)
            let log = (try? String(contentsOfFile: serve.logFile, encoding: .utf8)) ?? ""
            #expect(log.contains("refused the credentials: Authorization Violation"), "\(log)")
            #expect(log.contains("check --nats-user and --nats-password"), "\(log)")
            #expect(!log.contains("not reachable yet"), "\(log)")
            #expect(!log.contains(password), "\(log)")
        }
    }
}
