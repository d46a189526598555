import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

/// Generated messages: hostile or broken ones (each must be refused and recorded) and valid chat commands (each
/// must become a run that completes).
struct MessageStorm {
    var random: SeededRandom
    var invalidInbound = 0
    var validCommands = 0
    var forged = 0
    var serial = 0

    /// Valid events no handler takes (another service's event no flow names): recorded as unhandled, not refused.
    var unhandled = 0

    static let consumed = [
        Subjects.assistantCommandIssued, Subjects.calendarCreated, Subjects.calendarUpdated, Subjects.calendarCanceled,
        Subjects.calendarCreateFailed, Subjects.notificationSent, Subjects.notificationFailed, "events.storm",
    ]

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) } }

    mutating func envelope(type: String, data: JSONValue, id: String? = nil) -> [UInt8] {
        serial += 1
        let event = CloudEvent(id: id ?? "storm-\(serial)", source: "fuzz", type: type, data: data)
        return (try? EventCodec().encode(event)) ?? []
    }

    func command(title: JSONValue) -> [String: JSONValue] {
        [
            "message_id": "m", "intent": "calendar.create_event",
            "entities": ["title": title, "start": "2026-11-24T10:00:00Z"],
            "user": ["id": "u"], "channel": ["type": "chat", "conversation_id": "c"],
        ]
    }

    static func nested(_ depth: Int) -> String {
        String(repeating: "{\"a\":", count: depth) + "1" + String(repeating: "}", count: depth)
    }

    /// The next message: its subject and bytes.
    mutating func next() -> (subject: String, payload: [UInt8]) {
        let kind = Int.random(in: 0..<14, using: &random)
        let inbound = Self.consumed[Int.random(in: 0..<Self.consumed.count, using: &random)]
        let typeFor = [
            Subjects.assistantCommandIssued: EventType.assistantCommandIssued,
            Subjects.calendarCreated: EventType.calendarCreated,
            Subjects.calendarUpdated: EventType.calendarUpdated, Subjects.calendarCanceled: EventType.calendarCanceled,
            Subjects.calendarCreateFailed: EventType.calendarCreateFailed,
            Subjects.notificationSent: EventType.notificationSent,
            Subjects.notificationFailed: EventType.notificationFailed, "events.storm": "StormHappened",
        ]
        let type = typeFor[inbound]!
        // On the event subjects any type is valid: a readable event with object data is unhandled (no flow names
        // it), not refused.
        let isEvent = inbound == "events.storm"
        switch kind {
        case 0:  // random bytes
            invalidInbound += 1
            return (inbound, bytes(Int.random(in: 1...2000, using: &random)))
        case 1:  // a valid envelope, truncated
            invalidInbound += 1
            let whole = envelope(type: type, data: .object(command(title: "cut")))
            return (inbound, Array(whole.prefix(Int.random(in: 1..<whole.count, using: &random))))
        case 2:  // nested too deeply
            invalidInbound += 1
            let depth = Int.random(in: 33...3000, using: &random)
            return (
                inbound,
                Array(
                    #"{"specversion":"1.0","id":"deep-\#(serial)","source":"f","type":"\#(type)","data":\#(Self.nested(depth))}"#
                        .utf8)
            )
        case 3:  // wrong types in the envelope or the data
            invalidInbound += 1
            let variants: [String] = [
                #"{"specversion":"1.0","id":42,"source":"f","type":"\#(type)","data":{}}"#,
                #"{"specversion":1,"id":"w","source":"f","type":"\#(type)","data":{}}"#,
                #"{"specversion":"1.0","id":"w","source":"f","type":["\#(type)"],"data":{}}"#,
                #"[1,2,3]"#, #""just a string""#, "null", "123",
            ]
            return (inbound, Array(variants[Int.random(in: 0..<variants.count, using: &random)].utf8))
        case 4:  // huge fields
            invalidInbound += 1  // over the inbound size limit, or an id over the attribute limit
            if Int.random(in: 0..<20, using: &random) == 0 {
                return (
                    inbound,
                    envelope(
                        type: type, data: .object(command(title: .string(String(repeating: "h", count: 300 * 1024)))))
                )
            }
            return (
                inbound,
                envelope(
                    type: type, data: .object(command(title: "x")),
                    id: String(repeating: "i", count: Int.random(in: 257...4000, using: &random)))
            )
        case 5:  // unknown event type on an inbound subject
            if isEvent { unhandled += 1 } else { invalidInbound += 1 }
            return (
                inbound,
                envelope(type: "Unknown.\(Int.random(in: 0...99, using: &random))", data: .object(command(title: "?")))
            )
        case 6:  // a valid envelope whose data misses what the type needs
            if isEvent { unhandled += 1 } else { invalidInbound += 1 }
            var data = command(title: "missing")
            data.removeValue(
                forKey: ["message_id", "intent", "entities", "user", "channel"][Int.random(in: 0..<5, using: &random)])
            if inbound != Subjects.assistantCommandIssued { data = ["command_id": .number(7)] }
            return (inbound, envelope(type: type, data: .object(data)))
        case 7:  // numbers out of range, broken escapes
            let variants = [
                #"{"specversion":"1.0","id":"n-\#(serial)","source":"f","type":"\#(type)","data":{"command_id":1e999}}"#,
                #"{"specversion":"1.0","id":"n-\#(serial)","source":"f","type":"\#(type)","data":{"command_id":-1e400}}"#,
                #"{"specversion":"1.0","id":"\ud800\ud800","source":"f","type":"\#(type)","data":{"command_id":"\u0000"}}"#,
                #"{"specversion":"1.0","id":"e-\#(serial)","source":"f","type":"\#(type)","data":{"command_id":"\x"}}"#,
            ]
            let pick = Int.random(in: 0..<variants.count, using: &random)
            // Lone surrogates are read as U+FFFD and a NUL is a valid string: on the event subjects that third
            // variant is a readable event no flow takes; elsewhere its command_id names no command.
            if isEvent && pick == 2 { unhandled += 1 } else { invalidInbound += 1 }
            return (inbound, Array(variants[pick].utf8))
        case 8, 9:  // forged engine events, on subjects of runs and flows no one started
            forged += 1
            let id = "forged-\(Int.random(in: 0...999_999, using: &random))"
            let subject = Bool.random(using: &random) ? Subjects.run(id) : Subjects.flow(id)
            let types = [
                EventType.runStarted, EventType.stepAttemptSucceeded, EventType.flowRegistered, EventType.flowActivated,
                "Mystery",
            ]
            let payload: [UInt8] =
                Bool.random(using: &random)
                ? bytes(Int.random(in: 1...300, using: &random))
                : envelope(
                    type: types[Int.random(in: 0..<types.count, using: &random)],
                    data: ["run_id": .string(id), "flow_id": 12])
            return (subject, payload)
        default:  // a valid chat command: a real run
            validCommands += 1
            let titles: [JSONValue] = [
                .string("Storm \(serial)"), "with \u{1F600} emoji", "\u{FFFD} replaced",
                .string(String(repeating: "t", count: 2000)),
            ]
            return (
                Subjects.assistantCommandIssued,
                envelope(
                    type: EventType.assistantCommandIssued,
                    data: .object(command(title: titles[Int.random(in: 0..<titles.count, using: &random)])))
            )
        }
    }
}

extension Integration {
    @Suite struct MessageFuzzTests {
        /// Messages per storm: `LEDGERFLOW_FUZZ_MESSAGES` (CI runs the short default; 100,000 for the full storm).
        static var count: Int {
            ProcessInfo.processInfo.environment["LEDGERFLOW_FUZZ_MESSAGES"].flatMap(Int.init) ?? 3000
        }
        static var seed: UInt64 {
            ProcessInfo.processInfo.environment["LEDGERFLOW_FUZZ_SEED"].flatMap(UInt64.init) ?? 14
        }

        /// Malformed HTTP requests for every route; each answer must be below 500.
        static func malformedRequests(_ random: inout SeededRandom) -> [(String, String, [UInt8]?)] {
            let bodies: [[UInt8]] = [
                [0xFF, 0xFE, 0x00], Array("{".utf8), Array(MessageStorm.nested(5000).utf8), Array("[]".utf8),
                Array("null".utf8),
                Array(#"{"id":"x","version":1e19,"steps":[]}"#.utf8),
                Array(#"{"id":"x","version":-1,"steps":"no"}"#.utf8),
                Array(
                    #"{"id":"\ud800","trigger":{"cron":"/ * * * *"},"steps":[{"id":"d","action":"delay","with":{"duration":"infs"}}]}"#
                        .utf8),
                Array(#"{"flow_id":1e999,"input":{"a":"\uDC00"}}"#.utf8),
                Array(#"{"reason":[[[[[[]]]]]],"from_step":42}"#.utf8),
                Array(
                    #"{"id":"big","steps":[\#(Array(repeating: #"{"id":"s","action":"transform","with":{"value":1}}"#, count: 2000).joined(separator: ","))]}"#
                        .utf8),
            ]
            // Not the flow the storm's runs use: a malformed body must not do anything, but activate and deactivate
            // take no body and would do what they say.
            let ids = [
                "storm-target", "nope", String(repeating: "x", count: 600), "%2e%2e%2f", "a.b", "%F0%9F%98%80", "-",
            ]
            var out: [(String, String, [UInt8]?)] = []
            for body in bodies {
                let id = ids[Int.random(in: 0..<ids.count, using: &random)]
                out += [
                    ("POST", "/automation/flows", body), ("PUT", "/automation/flows/\(id)", body),
                    ("POST", "/automation/flows/\(id)/run", body),
                    ("POST", "/automation/runs/\(id)/cancel", body), ("POST", "/automation/runs/\(id)/redrive", body),
                    ("POST", "/automation/flows/\(id)/activate", body),
                    ("POST", "/automation/flows/\(id)/deactivate", body),
                ]
            }
            for id in ids {
                out += [
                    ("GET", "/automation/flows/\(id)?version=99999999999999999999", nil),
                    ("GET", "/automation/flows/\(id)/versions", nil),
                    ("GET", "/automation/runs/\(id)", nil),
                    ("GET", "/automation/runs?limit=-5&status=\(id)&flow_id=\(id)", nil),
                    ("GET", "/automation/runs?limit=1e99", nil), ("GET", "/automation/dlq?limit=abc", nil),
                ]
            }
            return out + [
                ("GET", "/metrics", nil), ("GET", "/health", nil), ("DELETE", "/automation/flows", nil),
                ("GET", "/automation/flows/calendar-create-event?version=-1", nil),
                ("GET", "/automation/flows?limit=1e99", nil),
            ]
        }

        static func succeededRuns(_ ledger: Ledger) async throws -> Int {
            let marker = Array(#""type":"FlowRunSucceeded""#.utf8)
            return try await ledger.read(subject: "ledger.run.>").filter { entry in
                let bytes = entry.payload
                guard bytes.count >= marker.count else { return false }
                return (0...(bytes.count - marker.count)).contains { i in
                    bytes[i..<(i + marker.count)].elementsEqual(marker)
                }
            }.count
        }

        @Test func aStormOfGeneratedMessagesStopsNothing() async throws {
            let ledger = try await freshLedger()
            defer { ledger.close() }
            let outside = try await NATSConnection.connect(url: TestServer.url, name: "storm", logger: testLogger)
            defer { outside.close() }
            let calendar = try await CalendarSimulator.connect(url: TestServer.url, logger: testLogger)
            let discovery = try await DiscoverySimulator.connect(url: TestServer.url, logger: testLogger)
            let simulators = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await calendar.run() }
                    group.addTask { try await discovery.run() }
                    try await group.waitForAll()
                }
            }
            defer { simulators.cancel() }
            let data = TemporaryDirectory("storm")
            var serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, dataDirectory: data.path)
            defer { serve.kill() }
            try await serve.waitReady()
            #expect(try await serve.http.json("POST", "/automation/flows", Fixtures.calendarCreateEvent).0 == 201)
            #expect(try await serve.http.json("POST", "/automation/flows/calendar-create-event/activate").0 == 200)

            var storm = MessageStorm(random: SeededRandom(seed: Self.seed))
            let started = ContinuousClock.now
            for i in 0..<Self.count {
                let (subject, payload) = storm.next()
                try outside.publish(subject: subject, payload: payload)
                if i % 500 == 499 { try await outside.flush(timeout: .seconds(10)) }
                if i % 1000 == 999 {
                    #expect(
                        serve.process.isRunning, "ledgerflow serve stopped during the storm (after \(i + 1) messages)")
                }
            }
            try await outside.flush(timeout: .seconds(10))
            // Requests on automation.flow.run (not stored in the log): each is answered, none stops the engine.
            var answered = 0
            for payload in [
                [0x00], Array("{}".utf8), Array(MessageStorm.nested(400).utf8),
                storm.envelope(type: EventType.flowRunRequested, data: ["flow_id": 1e300]),
            ] as [[UInt8]] {
                let reply = try await outside.request(
                    subject: Subjects.flowRunRequest, payload: payload, timeout: .seconds(10))
                if (try? JSONTree.parse(reply.payload))?[path: "data.error.status"] == .number(400) { answered += 1 }
            }
            #expect(answered == 4)
            // Malformed bodies to every route: no 5xx.
            var random = SeededRandom(seed: Self.seed)
            var serverErrors: [String] = []
            for (method, path, body) in Self.malformedRequests(&random) {
                let (status, _) = try await serve.http.text(method, path, body)
                if status >= 500 { serverErrors.append("\(method) \(path) → \(status)") }
            }
            #expect(serverErrors.isEmpty, "\(serverErrors)")

            // Every valid command became a run that completed, meanwhile.
            let end = try await ledger.lastSequence()
            try await eventually("the engine has handled every message and finished every run", timeout: .seconds(540))
            {
                // Both of the engine's consumers: the triggers' and the answers'.
                for consumer in ["engine", "engine-answers"] {
                    let info = try await ledger.api.consumerInfo(stream: ledger.stream, consumer: consumer)
                    guard info.num_pending == 0, info.num_ack_pending == 0 else { return false }
                }
                let (_, metrics) = try await serve.http.text("GET", "/metrics")
                let checkpoint =
                    (try await serve.http.json("GET", "/health")).1[path: "projection.checkpoint"]?.numberValue ?? 0
                return PrometheusText(metrics).value("ledgerflow_runs_in_memory") == 0 && checkpoint >= Double(end)
            }
            let succeeded = try await Self.succeededRuns(ledger)
            #expect(succeeded == storm.validCommands)
            #expect(serve.process.isRunning)
            // Every refusal is recorded, once, with its reason.
            let rejections = try await ledger.read(subject: Subjects.rejected).compactMap {
                entry -> InboundMessageRejected? in
                guard case .rejected(let r) = try JSONTree.decode(LedgerEvent.self, from: entry.payload).body else {
                    return nil
                }
                return r
            }
            #expect(rejections.count == storm.invalidInbound)
            #expect(Set(rejections.compactMap(\.sequence)).count == rejections.count)
            #expect(rejections.allSatisfy { !$0.reason.isEmpty })
            // Every valid event no handler took is recorded as unhandled, once.
            try await eventually("every unhandled event is recorded") {
                try await ledger.read(subject: "ledger.unhandled.>").count == storm.unhandled
            }
            // Every forged engine event is skipped by the read models and recorded once in the log.
            let (_, metrics) = try await serve.http.text("GET", "/metrics")
            #expect(PrometheusText(metrics).value("ledgerflow_projection_skipped_total") == Double(storm.forged))
            try await eventually("every skip is recorded in the log") {
                try await ledger.read(subject: "ledger.skipped.>").count == storm.forged
            }
            let elapsed = ContinuousClock.now - started
            print(
                "message storm: \(Self.count) messages (seed \(Self.seed)), \(storm.invalidInbound) refused and recorded, \(storm.unhandled) unhandled and recorded, \(storm.forged) forged engine events, \(storm.validCommands) runs completed meanwhile, in \(elapsed); \(Self.malformedRequests(&random).count) malformed HTTP requests, no 5xx"
            )

            // A restart on the same data serves normally.
            serve.kill()
            serve = try LedgerflowServe(
                binary: Fixtures.ledgerflowBinary, natsURL: TestServer.url, port: serve.port, dataDirectory: data.path)
            try await serve.waitReady()
            #expect(try await serve.http.json("GET", "/automation/runs?limit=5").0 == 200)
            let after = CloudEvent(
                id: "after-storm", source: "assistant", type: EventType.assistantCommandIssued,
                data: JSONValue.object(storm.command(title: "after")))
            try outside.publish(subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(after))
            do {
                try await eventually("a run after the restart completes", timeout: .seconds(60)) {
                    let (_, run) = try await serve.http.json(
                        "GET", "/automation/runs/\(DerivedID.uuid("calendar-create-event/after-storm"))")
                    return run["status"] == "SUCCEEDED"
                }
            } catch {
                let (status, run) = try await serve.http.json(
                    "GET", "/automation/runs/\(DerivedID.uuid("calendar-create-event/after-storm"))")
                let info = try await ledger.api.consumerInfo(stream: ledger.stream, consumer: "engine")
                print(
                    "run: \(status) \(run.compactJSON.prefix(2000)); consumer pending \(info.num_pending), ack pending \(info.num_ack_pending)"
                )
                print((try await serve.http.json("GET", "/health")).1.compactJSON)
                let log = (try? String(contentsOfFile: "\(data.path)/serve.log", encoding: .utf8)) ?? ""
                print("serve.log (last 3000 characters):\n" + String(log.suffix(3000)))
                throw error
            }
        }
    }
}
