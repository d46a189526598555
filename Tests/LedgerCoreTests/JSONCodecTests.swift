import Foundation
import LedgerCore
import Testing

/// The hand-written codec (`JSONWriter`, `JSONReadable`) against Foundation's coders over the `Codable` forms, which
/// wrote every log so far: the same bytes, and each reads what the other wrote.
@Suite struct JSONCodecTests {
    static func foundation(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    /// A small deterministic generator (SplitMix64), so a failure names a seed that reproduces it.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(next() % UInt64(range.count))
        }
        mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

        mutating func string() -> String {
            let alphabet: [Unicode.Scalar] = [
                "a", "b", "Z", "_", "0", " ", "\"", "\\", "/", "\n", "\t", "\r", "\u{08}", "\u{0C}", "\u{01}", "\u{1F}",
                "\u{7F}", "é", "ß", "\u{2028}", "😀", "中", "{", "}", ":", ",",
                // A combining mark: `String` orders "e\u{301}" (NFC "é") after "f", its UTF-8 bytes before.
                "e", "f", "\u{301}", "\u{212B}",
            ]
            var out = String.UnicodeScalarView()
            for _ in 0..<int(0...12) { out.append(alphabet[int(0...(alphabet.count - 1))]) }
            return String(out)
        }
        mutating func optionalString() -> String? { chance(50) ? string() : nil }

        mutating func number() -> Double {
            switch int(0...5) {
            case 0: return Double(int(-1000...1000))
            case 1: return Double(Int64(bitPattern: next()) >> Int64(int(0...60)))
            case 2: return Double(int(-99999...99999)) / 100
            case 3: return Double(bitPattern: next() & 0x7FEF_FFFF_FFFF_FFFF) * (chance(50) ? 1 : -1)
            case 4: return 1e15 * Double(int(1...20))
            default: return Double(int(1...9)) * pow(10, Double(int(-30...30)))
            }
        }

        mutating func json(depth: Int = 0) -> JSONValue {
            switch int(0...(depth > 3 ? 3 : 5)) {
            case 0: return .null
            case 1: return .bool(chance(50))
            case 2: return .number(number())
            case 3: return .string(string())
            case 4: return .array((0..<int(0...4)).map { _ in json(depth: depth + 1) })
            default:
                var object: [String: JSONValue] = [:]
                for _ in 0..<int(0...5) { object[string()] = json(depth: depth + 1) }
                return .object(object)
            }
        }
        /// An optional's `null` reads back as nil (with either coder), so an optional is absent or not null.
        /// (`nil` alone would be `JSONValue.null` here: JSONValue is `ExpressibleByNilLiteral`.)
        mutating func optionalJSON() -> JSONValue? {
            guard chance(50) else { return Optional.none }
            let value = json()
            return value == .null ? Optional.none : value
        }
        mutating func sequence() -> UInt64 { next() >> UInt64(int(11...63)) }
        mutating func error() -> StepError {
            StepError(kind: StepErrorKind(string()), message: string(), retryable: chance(50))
        }
        mutating func strings() -> [String] { (0..<int(0...3)).map { _ in string() } }

        /// One body of every kind the log holds, its fields random (optionals present or not).
        mutating func bodies() -> [LedgerEvent.Body] {
            var trigger = RunTrigger(
                kind: [.event, .manual, .schedule][int(0...2)], event_type: optionalString(),
                event_id: optionalString(), sequence: chance(50) ? sequence() : nil, data: optionalJSON())
            trigger.scheduled_at = optionalString()
            var started = FlowRunStarted(
                run_id: string(), flow_id: string(), flow_version: int(1...99), definition_hash: string(),
                mode: chance(50) ? .live : .dry, trigger: trigger, actor: string(), input: json(),
                step_ids: strings(), dedup_key: optionalString(), message_id: optionalString(), channel: optionalJSON())
            started.input_source = optionalString()
            started.worker = optionalString()
            started.actor_type = optionalString()
            started.on_behalf_of = optionalString()
            started.traceparent = optionalString()
            let attemptStarted = StepAttemptStarted(
                step_id: string(), attempt: int(1...9), idempotency_key: string(), command_id: optionalString(),
                started_at: string(), request: optionalJSON())
            let attemptSucceeded = StepAttemptSucceeded(
                step_id: string(), attempt: int(1...9), output: json(), started_at: string(), finished_at: string(),
                source_sequence: chance(50) ? sequence() : nil)
            let attemptFailed = StepAttemptFailed(
                step_id: string(), attempt: int(1...9), error: error(), started_at: string(), finished_at: string(),
                retry_at: optionalString(), source_sequence: chance(50) ? sequence() : nil)
            let runError = RunError(code: string(), message: string(), step_id: optionalString())
            let delivery = WebhookDeliveryAttempt(
                attempt: int(1...9), url: string(), idempotency_key: string(), output_sequence: sequence(),
                started_at: string(), finished_at: optionalString(), http_status: chance(50) ? int(100...599) : nil,
                error: chance(50) ? error() : nil, retry_at: optionalString())
            let actor = ActorRef(type: string(), id: string())
            return [
                .flowVersionRecorded(
                    FlowVersionRecorded(
                        flow_id: string(), version: int(1...9), definition: json(), definition_hash: string(),
                        actor: string(), based_on: chance(50) ? int(1...9) : nil, summary: optionalString(),
                        actor_type: optionalString())),
                .flowStatusChanged(
                    FlowStatusChanged(
                        flow_id: string(), version: int(1...9), actor: string(),
                        status: [.draft, .active, .deprecated, .broken][int(0...3)], actor_type: optionalString(),
                        reason: optionalString())),
                .runStarted(started),
                .stepAttemptStarted(attemptStarted), .compensationStarted(attemptStarted),
                .stepAttemptSucceeded(attemptSucceeded), .compensationSucceeded(attemptSucceeded),
                .stepAttemptFailed(attemptFailed), .compensationFailed(attemptFailed),
                .stepSkipped(StepSkipped(step_id: string(), reason: string())),
                .stepLateResultRecorded(
                    StepLateResultRecorded(
                        step_id: string(), attempt: int(1...9), output: json(), received_at: string(),
                        source_sequence: chance(50) ? sequence() : nil, compensable: chance(50))),
                .runSucceeded(FlowRunSucceeded(output: json(), webhook: optionalString())),
                .runFailed(FlowRunFailed(error: runError)),
                .runCompensating(FlowRunCompensating(error: runError)),
                .rejected(
                    InboundMessageRejected(
                        subject: string(), sequence: chance(50) ? sequence() : nil, reason: string(),
                        payload: chance(50) ? Array(string().utf8) : [0xFF, 0x00, UInt8(int(0...255))])),
                .unhandled(
                    InboundEventUnhandled(
                        event_id: string(), type: string(), source: string(),
                        sequence: chance(50) ? sequence() : nil, reason: string())),
                .runCancelRequested(
                    FlowRunCancelRequested(actor: string(), reason: optionalString(), actor_type: optionalString())),
                .runCancelled(FlowRunCancelled(actor: string())),
                .runRedriven(
                    FlowRunRedriven(
                        actor: string(), from_step: string(), reset_steps: strings(), actor_type: optionalString())),
                .runClaimed(
                    RunClaimed(
                        worker: string(), previous_worker: optionalString(), in_flight: strings(), reason: string())),
                .tokenChanged(
                    AccessTokenChanged(
                        token_id: string(), subject: string(), role: string(), change: string(), actor: string(),
                        actor_type: optionalString())),
                .signalIssued(
                    ManualSignal(
                        signal_id: string(), signal_type: string(), flow_id: string(), payload: json(),
                        metadata: ManualSignal.Metadata(
                            source: ManualSignal.Source(type: string(), actor: actor), trace_id: string(),
                            executed_at: string(), mode: string(), on_behalf_of: optionalString()))),
                .scheduleFiring(
                    ScheduleFiring(
                        flow_id: string(), nominal_time: string(),
                        outcome: [.started, .skipped, .buffered][int(0...2)],
                        class: optionalString(), reason: optionalString(), run_id: optionalString(),
                        late_ms: chance(50) ? Int64(int(-99999...99999)) : nil,
                        jitter_ms: chance(50) ? Int64(int(0...99999)) : nil, count: chance(50) ? int(0...999) : nil,
                        last_nominal_time: optionalString(), worker: optionalString())),
                .scheduleStateChanged(
                    ScheduleStateChanged(
                        flow_id: string(), paused: chance(50), actor: string(), actor_type: optionalString(),
                        reason: optionalString())),
                .runAcknowledged(FlowRunAcknowledged(text: optionalString(), error: optionalString())),
                .deliveryStarted(delivery), .deliverySucceeded(delivery), .deliveryFailed(delivery),
                .deliveryRedriven(WebhookDeliveryRedriven(actor: string(), actor_type: optionalString())),
            ]
        }
    }

    /// The same event as Foundation's coder writes it over the `Codable` form (what every log so far holds).
    static func foundationEvent(
        _ body: LedgerEvent.Body, id: String, time: String, runid: String?, flowid: String?, flowversion: Int?,
        traceparent: String?, prevhash: String?
    ) throws -> [UInt8] {
        func event<P: Codable & Sendable>(_ data: P) throws -> [UInt8] {
            try foundation(
                CloudEvent(
                    id: id, type: body.type, time: time, runid: runid, flowid: flowid, flowversion: flowversion,
                    stepid: body.stepID, traceparent: traceparent, prevhash: prevhash, data: data))
        }
        switch body {
        case .flowVersionRecorded(let e): return try event(e)
        case .flowStatusChanged(let e): return try event(e)
        case .runStarted(let e): return try event(e)
        case .stepAttemptStarted(let e), .compensationStarted(let e): return try event(e)
        case .stepAttemptSucceeded(let e), .compensationSucceeded(let e): return try event(e)
        case .stepAttemptFailed(let e), .compensationFailed(let e): return try event(e)
        case .stepSkipped(let e): return try event(e)
        case .stepLateResultRecorded(let e): return try event(e)
        case .runSucceeded(let e): return try event(e)
        case .runFailed(let e): return try event(e)
        case .rejected(let e): return try event(e)
        case .unhandled(let e): return try event(e)
        case .runCompensating(let e): return try event(e)
        case .runCancelRequested(let e): return try event(e)
        case .runCancelled(let e): return try event(e)
        case .runRedriven(let e): return try event(e)
        case .runClaimed(let e): return try event(e)
        case .tokenChanged(let e): return try event(e)
        case .signalIssued(let e): return try event(e)
        case .scheduleFiring(let e): return try event(e)
        case .scheduleStateChanged(let e): return try event(e)
        case .runAcknowledged(let e): return try event(e)
        case .deliveryStarted(let e), .deliverySucceeded(let e), .deliveryFailed(let e): return try event(e)
        case .deliveryRedriven(let e): return try event(e)
        case .outputPublished, .other: return try event(JSONValue.null)
        }
    }

    @Test(arguments: 0..<40)
    func everyEventIsWrittenAsFoundationWroteItAndReadBackByBoth(seed: Int) throws {
        var random = Random(state: UInt64(seed))
        for body in random.bodies() {
            let (id, time, runid, flowid) = (
                random.string(), random.string(), random.optionalString(), random.optionalString()
            )
            let version = random.chance(50) ? random.int(1...99) : nil
            let (traceparent, prevhash) = (random.optionalString(), random.optionalString())
            let ours = body.eventBytes(
                id: id, time: time, runid: runid, flowid: flowid, flowversion: version, traceparent: traceparent,
                prevhash: prevhash)
            let theirs = try Self.foundationEvent(
                body, id: id, time: time, runid: runid, flowid: flowid, flowversion: version, traceparent: traceparent,
                prevhash: prevhash)
            #expect(
                ours == theirs,
                "seed \(seed), \(body.type):\nours   \(String(decoding: ours, as: UTF8.self))\ntheirs \(String(decoding: theirs, as: UTF8.self))"
            )
            let read = try LedgerEvent(bytes: theirs)
            let reference = try JSONDecoder().decode(LedgerEvent.self, from: Data(ours))
            #expect(read == reference, "seed \(seed), \(body.type)")
            #expect(read.body == body, "seed \(seed), \(body.type)")
            #expect((read.id, read.time, read.runid, read.flowid) == (id, time, runid, flowid))
        }
    }

    @Test(arguments: 0..<200)
    func randomValuesAreWrittenAndReadAsFoundationDoes(seed: Int) throws {
        var random = Random(state: UInt64(seed) &* 7919)
        let value = random.json()
        let ours = value.jsonBytes
        #expect(ours == (try Self.foundation(value)), "seed \(seed): \(value)")
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(ours)) == value)
        #expect(try JSONValue(jsonBytes: ours) == value)
        #expect(value.compactJSON == String(decoding: ours, as: UTF8.self))
    }

    @Test func numbersAreWrittenAsJSONEncoderWritesThem() throws {
        let numbers: [Double] = [
            0, -0.0, 1, -1, 0.1, 1.5, 1e-7, 2.5e-5, 1e15, -1e15, 1e16, 999_999_999_999_999, 123_456_789_012_345_680,
            1e21, 1e300, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 12345.678,
        ]
        for n in numbers {
            #expect(JSONValue.number(n).jsonBytes == (try Self.foundation(JSONValue.number(n))), "\(n)")
        }
        #expect(JSONValue.number(.nan).compactJSON == "null")
        #expect(JSONValue.number(.infinity).compactJSON == "null")
        var writer = JSONWriter()
        writer.array([Int64.min, Int64.max, 0, -7]) { $0.int($1) }
        writer.unsigned(UInt64.max)
        #expect(
            String(decoding: writer.bytes, as: UTF8.self)
                == "[-9223372036854775808,9223372036854775807,0,-7]18446744073709551615")
    }

    @Test func runStatesAreStoredAsFoundationStoredThem() throws {
        for text in [
            StoredShapeTests.stored(status: "RUNNING", phase: nil, cancelledBy: nil, error: nil, finished: false),
            StoredShapeTests.stored(
                status: "RUNNING", phase: "compensating", cancelledBy: nil, error: nil, finished: false),
            StoredShapeTests.stored(
                status: "RUNNING", phase: "compensating", cancelledBy: "ops", error: StoredShapeTests.cancelError,
                finished: false),
            StoredShapeTests.stored(
                status: "CANCELLED", phase: nil, cancelledBy: "ops", error: StoredShapeTests.cancelError, finished: true
            ),
            StoredShapeTests.stored(
                status: "FAILED", phase: nil, cancelledBy: nil, error: StoredShapeTests.stepError, finished: true),
        ] {
            let ours = try RunState(jsonBytes: Array(text.utf8))
            let theirs = try JSONDecoder().decode(RunState.self, from: Data(text.utf8))
            #expect(ours == theirs)
            #expect(String(decoding: ours.jsonBytes, as: UTF8.self) == text)
            #expect(ours.jsonBytes == (try Self.foundation(ours)))
        }
    }

    @Test(arguments: 0..<20)
    func runStatesFoldedFromRandomEventsAreStoredAsFoundationStoresThem(seed: Int) throws {
        var random = Random(state: UInt64(seed) &+ 1_000_003)
        let bodies = random.bodies()
        guard case .runStarted(var started) = bodies.first(where: { $0.type == EventType.runStarted }) else {
            Issue.record("no start")
            return
        }
        started.step_ids = ["a", "b", "c"]
        var state: RunState? = nil
        var sequence: UInt64 = 0
        let steps = ["a", "b", "c"]
        for body in [LedgerEvent.Body.runStarted(started)] + bodies.map({ $0.withStep(steps[random.int(0...2)]) }) {
            sequence += 1
            state = RunState.evolve(
                state,
                LedgerEvent(
                    id: "e\(sequence)", type: body.type, time: random.string(), runid: started.run_id, body: body),
                sequence: sequence)
            guard let state else { continue }
            let ours = state.jsonBytes
            #expect(ours == (try Self.foundation(state)), "seed \(seed) after \(body.type)")
            #expect(try RunState(jsonBytes: ours) == (try JSONDecoder().decode(RunState.self, from: Data(ours))))
        }
    }

    @Test func whatCannotBeReadSaysWhereAndWhy() throws {
        let missing = #"{"id":"i","type":"StepAttemptSucceeded","data":{"step_id":"s","output":{}}}"#
        #expect(throws: JSONShapeError(path: ["data", "attempt"], message: "missing")) {
            try LedgerEvent(bytes: Array(missing.utf8))
        }
        let wrong = #"{"id":"i","type":"RunClaimed","data":{"worker":"w","in_flight":["a",7],"reason":"r"}}"#
        do {
            _ = try LedgerEvent(bytes: Array(wrong.utf8))
            Issue.record("read a claim with a number among its attempts")
        } catch let error as JSONShapeError {
            #expect(error.description == "data.in_flight.1: expected a string, found 7")
        }
        #expect(throws: JSONTree.ParseError.self) { try LedgerEvent(bytes: Array(#"{"id":"#.utf8)) }
        #expect(throws: JSONShapeError.self) { try RunState(jsonBytes: Array("[1]".utf8)) }
        let unknown = #"{"id":"i","type":"SomethingNew","data":{"x":1},"extra":[1,2]}"#
        #expect(try LedgerEvent(bytes: Array(unknown.utf8)).body == .other)
        let null = #"{"id":"i","type":"StepAttemptSucceeded","data":{"step_id":null,"attempt":1,"output":{}}}"#
        #expect(throws: JSONShapeError(path: ["data", "step_id"], message: "is null")) {
            try LedgerEvent(bytes: Array(null.utf8))
        }
    }

    /// Keys that differ in `String`'s order (NFC) and in their bytes: sorted as Foundation sorts them, by bytes.
    @Test func objectKeysAreSortedByTheirBytesAsFoundationSortsThem() throws {
        let value: JSONValue = ["e\u{301}": 1, "f": 2, "\u{C5}": 3, "B": 4, "ea": 5]
        #expect(value.jsonBytes == (try Self.foundation(value)))
        #expect(value.compactJSON == #"{"B":4,"ea":5,"e\#u{301}":1,"f":2,"\#u{C5}":3}"#)
    }

    /// `data` may be `null`: a payload that takes it (free-form JSON) reads it, as Foundation's decoder does; one
    /// that does not says so; a missing `data` is missing.
    @Test func anEnvelopeWhoseDataIsNullIsReadAsFoundationReadsIt() throws {
        let text = #"{"specversion":"1.0","id":"i","source":"s","type":"t","data":null}"#
        let ours = try CloudEvent<JSONValue>(jsonBytes: Array(text.utf8))
        let theirs = try JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(text.utf8))
        #expect(ours.data == .null)
        #expect(theirs.data == .null)
        #expect(ours.jsonBytes == (try Self.foundation(theirs)))
        #expect(throws: JSONShapeError(path: ["data"], message: "expected an object, found null")) {
            try CloudEvent<StepError>(jsonBytes: Array(text.utf8))
        }
        let missing = #"{"specversion":"1.0","id":"i","source":"s","type":"t"}"#
        #expect(throws: JSONShapeError(path: ["data"], message: "missing")) {
            try CloudEvent<JSONValue>(jsonBytes: Array(missing.utf8))
        }
    }

    /// A JSON number carries integers exactly up to 2^53 in size; a larger one was rounded when it was parsed, so
    /// an integer field refuses it (saying so) rather than reading a neighbour of what was written.
    @Test func integersBeyondWhatANumberCarriesExactlyAreRefused() throws {
        func attempt(_ text: String) throws -> Int {
            let event =
                #"{"id":"i","type":"StepAttemptStarted","data":{"step_id":"s","attempt":\#(text),"idempotency_key":"k","started_at":"t"}}"#
            guard case .stepAttemptStarted(let e) = try LedgerEvent(bytes: Array(event.utf8)).body else {
                throw JSONShapeError(message: "not a step start")
            }
            return e.attempt
        }
        #expect(try attempt("9007199254740991") == 9_007_199_254_740_991)
        #expect(try attempt("-9007199254740991") == -9_007_199_254_740_991)
        for text in ["9007199254740992", "9007199254740993", "9223372036854775807", "18446744073709551615", "1e300"] {
            do {
                let read = try attempt(text)
                Issue.record("\(text) read as \(read)")
            } catch let error as JSONShapeError {
                #expect(error.path == ["data", "attempt"])
                #expect(error.message.contains("out of range"), "\(error)")
            }
        }
        #expect(throws: JSONShapeError.self) { try attempt("1.5") }
        // A negative number where only a count or a log position fits says so, not "out of range".
        #expect(try UInt64(json: .number(0)) == 0)
        do {
            let read = try UInt64(json: .number(-1))
            Issue.record("-1 read as \(read)")
        } catch {
            #expect(error.message == "a sequence number (an integer ≥ 0) must not be negative, found -1", "\(error)")
        }
        #expect(throws: (any Error).self) { try TreeDecoderProbe.read(#"{"n":9007199254740993}"#) }
        #expect(try TreeDecoderProbe.read(#"{"n":9007199254740991}"#) == 9_007_199_254_740_991)
        // Through `Codable` too, each refusal says what was wrong, at the field's path.
        for (text, says) in [
            (#"{"n":9007199254740993,"u":1}"#, "found 9007199254740992, which is out of its range"),
            (#"{"n":1.5,"u":1}"#, "expected a whole number (Int64), found 1.5"),
            (#"{"n":1,"u":-1}"#, "expected UInt64, which must not be negative, found -1"),
            (#"{"n":1,"u":"1"}"#, "expected UInt64, found \"1\""),
        ] {
            do {
                _ = try JSONTree.decode(TreeDecoderProbe.self, from: Array(text.utf8))
                Issue.record("\(text) was read")
            } catch DecodingError.typeMismatch(_, let context) {
                #expect(context.debugDescription.contains(says), "\(context.debugDescription)")
                #expect(context.codingPath.count == 1)
            }
        }
    }

    /// Read through `Codable` over the parsed tree (the path definitions take).
    struct TreeDecoderProbe: Decodable {
        var n: Int64
        var u: UInt64?
        static func read(_ text: String) throws -> Int64 {
            try JSONTree.decode(TreeDecoderProbe.self, from: Array(text.utf8)).n
        }
    }
}

extension LedgerEvent.Body {
    /// The same body about `step` (so that a fold of random events touches the run's steps).
    func withStep(_ step: String) -> LedgerEvent.Body {
        switch self {
        case .stepAttemptStarted(var e):
            e.step_id = step
            return .stepAttemptStarted(e)
        case .compensationStarted(var e):
            e.step_id = step
            return .compensationStarted(e)
        case .stepAttemptSucceeded(var e):
            e.step_id = step
            return .stepAttemptSucceeded(e)
        case .compensationSucceeded(var e):
            e.step_id = step
            return .compensationSucceeded(e)
        case .stepAttemptFailed(var e):
            e.step_id = step
            return .stepAttemptFailed(e)
        case .compensationFailed(var e):
            e.step_id = step
            return .compensationFailed(e)
        case .stepSkipped(var e):
            e.step_id = step
            return .stepSkipped(e)
        case .stepLateResultRecorded(var e):
            e.step_id = step
            return .stepLateResultRecorded(e)
        default: return self
        }
    }
}
