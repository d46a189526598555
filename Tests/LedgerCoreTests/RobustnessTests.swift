import Foundation
import LedgerCore
import Testing

/// Hostile input against the pure core's parsers: each test names the input that trapped (or slipped through)
/// before, and what happens now. The same inputs are in the fuzz corpora (fuzz/corpus/).
@Suite struct RobustnessTests {
    func json(_ text: String, maxDepth: Int = Limits.storedJSONDepth) throws(JSONTree.ParseError) -> JSONValue {
        try JSONTree.parse(Array(text.utf8), maxDepth: maxDepth)
    }

    // MARK: JSONTree

    /// Trapped: `low - 0xDC00` on a UInt32 when the escape after a high surrogate is not a low one.
    @Test func aHighSurrogateBeforeAnotherEscapeIsReplaced() throws {
        #expect(try json(#""\uD800\u0041""#) == "\u{FFFD}A")
        #expect(try json(#"{"text":"broken \uD800\u0000 escape"}"#) == ["text": "broken \u{FFFD}\u{0000} escape"])
        #expect(try json(#""\uD800\uD800\uDC00""#) == "\u{FFFD}\u{10000}")
    }

    @Test func loneSurrogatesBecomeReplacementCharacters() throws {
        #expect(try json(#""\uD800""#) == "\u{FFFD}")
        #expect(try json(#""\uDC00x""#) == "\u{FFFD}x")
        #expect(try json(#""\uD83D\uDE00""#) == "\u{1F600}")
    }

    /// Slipped through: `1e999` became an infinity, which compactJSON wrote as `inf` and conversions trap on.
    @Test func numbersPastDoubleAreRefusedWithTheirOffset() throws {
        #expect(throws: JSONTree.ParseError(offset: 5, message: "number out of range")) { try json(#"{"n":1e999}"#) }
        do {
            _ = try json("[0, -1e400]")
            Issue.record("accepted -1e400")
        } catch {
            #expect(error.description.contains("number out of range at byte 4"), "\(error)")
        }
        #expect(try json("1e-400") == 0)
    }

    @Test func numbersFollowTheJSONGrammar() throws {
        for bad in ["+1", "01", "1.", ".5", "-", "1e", "0x10", "--1", "1.2.3", "Infinity", "NaN"] {
            #expect(throws: JSONTree.ParseError.self, "\(bad)") { try json(bad) }
        }
        #expect(try json("-0.5e+2") == -50)
        #expect(try json("123456789012345678") == .number(1.2345678901234568e17))
    }

    @Test func depthIsLimitedWithTheLimitInTheMessage() throws {
        let deep = { (n: Int) in String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        _ = try json(deep(Limits.storedJSONDepth))
        #expect(throws: JSONTree.ParseError.self) { try json(deep(Limits.storedJSONDepth + 1)) }
        _ = try json(deep(Limits.inboundJSONDepth), maxDepth: Limits.inboundJSONDepth)
        do {
            _ = try json(deep(Limits.inboundJSONDepth + 1), maxDepth: Limits.inboundJSONDepth)
            Issue.record("accepted a document deeper than the inbound limit")
        } catch {
            #expect(error.message.contains("deeper than \(Limits.inboundJSONDepth) levels"))
        }
        // Far past any limit: an error, not a stack overflow.
        #expect(throws: JSONTree.ParseError.self) { try json(String(repeating: "[", count: 200_000)) }
        #expect(throws: JSONTree.ParseError.self) {
            try JSONTree.decode(JSONValue.self, from: Array(deep(40).utf8), maxDepth: 32)
        }
    }

    /// Slipped through: NaN and infinities were written as `nan` / `inf`, which no JSON parser reads.
    @Test func compactJSONNeverWritesInvalidJSON() throws {
        let value: JSONValue = [
            "a": .number(.nan), "b": .number(.infinity), "c": .number(-.infinity), "d": 1e300, "e": 0.1,
        ]
        let text = value.compactJSON
        #expect(text == #"{"a":null,"b":null,"c":null,"d":1e+300,"e":0.1}"#)
        #expect(try json(text)["d"] == 1e300)
        let encoded = try JSONEncoder().encode(value)
        #expect(String(decoding: encoded, as: UTF8.self).contains(#""b":null"#))
    }

    /// Trapped in an earlier draft of this change (abs(Int64.min)): integers at the edge of Int64.
    @Test func integersAtTheEdgeOfInt64AreWritten() throws {
        for n in [-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_807.0, -1e15, 1e15, 999_999_999_999_999] {
            let text = JSONValue.number(n).compactJSON
            #expect(try json(text) == .number(n), "\(text)")
            #expect(try JSONEncoder().encode(JSONValue.number(n)).count > 0)
        }
    }

    @Test func pathsWithGiantOrNegativeIndexesFindNothing() {
        let value: JSONValue = ["items": [1, 2]]
        #expect(value[path: "items.99999999999999999999999"] == nil)
        #expect(value[path: "items.-1"] == nil)
        #expect(value[path: "items.1"] == 2)
    }

    // MARK: Conditions and templates

    /// Trapped (stack overflow): every "(" and "!" recursed without bound.
    @Test func conditionNestingIsBounded() throws {
        let parens = String(repeating: "(", count: 100_000) + "1" + String(repeating: ")", count: 100_000)
        #expect(throws: Condition.ParseError.self) { try Condition.parse(parens) }
        let nots = String(repeating: "!", count: 3000) + "1"
        do {
            _ = try Condition.parse(nots)
            Issue.record("accepted 3000 nested !")
        } catch {
            #expect(
                error.message.contains("nested deeper than \(Limits.conditionDepth) levels at character"),
                "\(error.message)")
        }
        let ok =
            String(repeating: "(", count: Limits.conditionDepth) + "1"
            + String(repeating: ")", count: Limits.conditionDepth)
        #expect(try Condition.parse(ok).holds(in: .null))
        #expect(try Condition.parse(String(repeating: "!", count: Limits.conditionDepth) + "1").holds(in: .null))
    }

    @Test func conditionLengthAndOperatorsAreBounded() {
        let long = String(repeating: "1 && ", count: 2000) + "1"
        #expect(throws: Condition.ParseError.self) { try Condition.parse(long) }
        let many = String(repeating: "1&&", count: Limits.conditionOperators + 1) + "1"
        #expect(many.count <= Limits.conditionCharacters)
        #expect(throws: Condition.ParseError.self) { try Condition.parse(many) }
    }

    /// Slipped through: `inf`, `nan`, `1e400` and hex were read as numbers by Double(String).
    @Test func conditionNumbersAreJSONNumbers() throws {
        for bad in ["{{a}} > inf", "nan == nan", "{{a}} < 1e400", "{{a}} == 0x10", "{{a}} > +1"] {
            #expect(throws: Condition.ParseError.self, "\(bad)") { try Condition.parse(bad) }
        }
        let context: JSONValue = ["a": 1e308, "b": -1e308]
        #expect(try Condition.parse("{{a}} > {{b}} && {{a}} >= 9e307 && {{b}} < -1e+300").holds(in: context))
    }

    @Test func conditionErrorsNameTheCharacter() {
        for (text, place) in [
            ("{{a}} == ", "at character 9"), ("({{a}}", "at character 0"), ("{{a}} ==  'x", "at character 10"),
            ("{{a}} {{b}}", "at character 6"),
        ] {
            do {
                _ = try Condition.parse(text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains(place), "\(text): \(error.message)")
            }
        }
    }

    @Test func templateErrorsNameThePathAndCharacter() {
        #expect(
            throws: Template.RenderError(
                path: "title", message: "the \"{{\" at character 6 is never closed with \"}}\"")
        ) {
            try Template.render(["title": "Hello {{trigger.x"], context: .null)
        }
        #expect(throws: Template.RenderError.self) { try Template.references(in: ["a": ["x {{ }} y"]]) }
    }

    // MARK: Durations

    /// Slipped through, then trapped in the engine's Int conversion: `infs` and `1e400s` came out as infinity.
    @Test(arguments: [
        "infs", "1e400s", "nans", "0x10s", "-5s", "+5s", " 5s", "5s ", "5", "s", ".5s", "5.s", "1e3s", "0s", "0.0ms",
        "31d", "1_000s", "٣s",
    ])
    func durationsOutsideTheGrammarOrLimitsAreRefused(_ text: String) {
        #expect(DurationText.seconds(text) == nil)
        guard case .failure(let problem) = DurationText.parse(text) else {
            Issue.record("accepted \(text)")
            return
        }
        #expect(!problem.message.isEmpty)
    }

    @Test func durationsInTheGrammarAreRead() {
        #expect(DurationText.seconds("500ms") == 0.5)
        #expect(DurationText.seconds("1.5h") == 5400)
        #expect(DurationText.seconds("30d") == Limits.runTimeoutSeconds)
        #expect(DurationText.seconds("007s") == 7)
    }

    // MARK: Cron

    /// `/ * * * *` trapped (index out of range); the others were accepted.
    @Test(arguments: [
        ("/ * * * *", "minute"), ("*/ * * * *", "minute"), ("-5 * * * *", "minute"), ("5- * * * *", "minute"),
        ("1-2-3 * * * *", "minute"), (",, * * * *", "minute"), ("* 99999999999999999999 * * *", "hour"),
        ("*/0 * * * *", "minute"), ("* * 5-1 * *", "day of month"), ("* * * ٣ *", "month"),
        ("* * * * MON-", "day of week"),
        ("* * * MON *", "month"), ("JAN * * * *", "minute"), ("* * * * */99999999999999999999", "day of week"),
    ])
    func badCronFieldsAreNamed(_ cron: String, _ field: String) {
        let problem = CronCheck.problem(cron)
        #expect(problem?.contains("\(field) field") == true, "\(cron): \(problem ?? "accepted")")
    }

    @Test func goodCronIsAccepted() {
        for cron in ["0 9 * * MON-FRI", "*/15 0-23/2 1,15 JAN-DEC sun", "59 23 31 12 7", "5/10 * * * *"] {
            #expect(CronCheck.problem(cron) == nil, "\(cron)")
        }
        #expect(CronCheck.problem(String(repeating: "* ", count: 1000)) != nil)
    }

    // MARK: Retry delays

    /// Trapped: Int(Double) past Int.max with huge stored values, and `attempt - 1` at Int.min.
    @Test func retryDelaysAreClampedForAnyStoredValues() {
        let huge = RetryPolicy(initial_ms: Int.max, max_ms: Int.max, jitter: false)
        #expect(huge.delayMillis(after: 3, random: 0) == Limits.retryDelayMillis)
        var jittered = huge
        jittered.jitter = true
        #expect(jittered.delayMillis(after: 70, random: 1) == Limits.retryDelayMillis)
        #expect(jittered.delayMillis(after: 1, random: .nan) == Limits.retryDelayMillis / 2)
        #expect(jittered.delayMillis(after: 1, random: .infinity) == Limits.retryDelayMillis)
        let negative = RetryPolicy(initial_ms: Int.min, max_ms: Int.min)
        #expect(negative.delayMillis(after: Int.min, random: -5) == 0)
        #expect(RetryPolicy(initial_ms: 100, max_ms: 1000, jitter: false).delayMillis(after: Int.min, random: 0) == 100)
        #expect(RetryPolicy(initial_ms: 100, max_ms: 1000, jitter: false).delayMillis(after: 3, random: 0) == 400)
    }

    // MARK: Timestamps

    /// Trapped: Int64(Double) on NaN, infinities and dates past Int64 milliseconds.
    @Test func formattingAnyDateIsClamped() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: .nan)) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: .infinity)) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -1e300)) == "0001-01-01T00:00:00.000Z")
        #expect(Timestamp.format(.distantFuture) == "4001-01-01T00:00:00.000Z")
        #expect(Timestamp.format(millis: Int64.max) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.format(millis: Int64.min) == "0001-01-01T00:00:00.000Z")
    }

    /// Wrote "1970-01-01T00:00:00.-01Z" and the like: instants before 1970 used truncating division.
    @Test func instantsBefore1970AreWrittenCorrectly() {
        #expect(Timestamp.format(millis: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp.format(millis: -86_400_001) == "1969-12-30T23:59:59.999Z")
        let text = Timestamp.format(millis: -62_135_596_800_000)
        #expect(text == "0001-01-01T00:00:00.000Z")
        #expect(Timestamp.parse(text).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } == -62_135_596_800_000)
    }

    @Test(arguments: [
        "0000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-02-30T00:00:00Z",
        "2026-11-20T24:00:00Z",
        "2026-11-20T05:61:00Z", "2026-11-20T05:45:45+99:00", "2026-11-20T05:45:45+01:99", "2026-11-20T05:45:45",
        "2026-11-20T05:45:45.Z",
        "2026-11-20T05:45:45Zjunk", "2026x11-20T05:45:45Z", "2026-11-20T05:45:45+0100", "", "2026",
        "-026-11-20T05:45:45Z",
    ])
    func malformedTimestampsAreRefused(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test func wellFormedTimestampsAreRead() {
        #expect(Timestamp.parse("2024-02-29T23:59:60.5z") != nil)
        #expect(Timestamp.parse("2026-11-20 05:45:45-01:30") == Timestamp.parse("2026-11-20T07:15:45Z"))
    }

    // MARK: Inbound envelopes

    func inbound(_ text: String) -> Result<CloudEvent<JSONValue>, EnvelopeProblem> {
        decodeInbound(Array(text.utf8), expectedTypes: ["AssistantCommandIssued"], codec: EventCodec())
    }

    /// The chat message with a broken escape trapped the engine's inbound handler (through JSONTree).
    @Test func aChatMessageWithABrokenEscapeIsRead() throws {
        let event = try inbound(
            #"{"specversion":"1.0","id":"1","source":"chat","type":"AssistantCommandIssued","data":{"text":"hi \uD800\u0041"}}"#
        ).get()
        #expect(event.data["text"] == "hi \u{FFFD}A")
    }

    @Test(arguments: [
        "id", "source", "type", "subject", "runid", "flowid", "correlationid", "causationid", "time",
    ])
    func overlongAttributesAreRefusedByName(_ attribute: String) {
        var fields = ["specversion": "1.0", "id": "1", "source": "s", "type": "AssistantCommandIssued"]
        fields[attribute] = String(repeating: "x", count: Limits.identifierBytes + 1)
        let text = "{" + fields.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",") + "}"
        guard case .failure(let problem) = inbound(text) else {
            Issue.record("accepted a \(attribute) of \(Limits.identifierBytes + 1) bytes")
            return
        }
        #expect(
            problem.reason.contains("attribute \(attribute) is \(Limits.identifierBytes + 1) bytes long"),
            "\(problem.reason)")
        #expect(problem.reason.contains("at most \(Limits.identifierBytes) bytes"))
    }

    @Test func oversizedAndOverdeepMessagesAreRefused() {
        let padding = String(repeating: "x", count: Limits.inboundMessageBytes)
        let big =
            #"{"specversion":"1.0","id":"1","source":"s","type":"AssistantCommandIssued","data":{"p":"\#(padding)"}}"#
        guard case .failure(let problem) = inbound(big) else {
            Issue.record("accepted \(big.utf8.count) bytes")
            return
        }
        #expect(
            problem.reason.contains("\(big.utf8.count) bytes")
                && problem.reason.contains("at most \(Limits.inboundMessageBytes) bytes"), "\(problem.reason)")

        let nested =
            String(repeating: "[", count: Limits.inboundJSONDepth)
            + String(repeating: "]", count: Limits.inboundJSONDepth)
        let deep = #"{"specversion":"1.0","id":"1","source":"s","type":"AssistantCommandIssued","data":\#(nested)}"#
        guard case .failure(let tooDeep) = inbound(deep) else {
            Issue.record("accepted data nested past the inbound limit")
            return
        }
        #expect(tooDeep.reason.contains("deeper than \(Limits.inboundJSONDepth) levels"), "\(tooDeep.reason)")
        guard
            case .failure(let overflow) = inbound(
                #"{"specversion":"1.0","id":"1","source":"s","type":"AssistantCommandIssued","data":{"n":1e999}}"#)
        else {
            Issue.record("accepted 1e999")
            return
        }
        #expect(overflow.reason.contains("number out of range at byte 87"), "\(overflow.reason)")
    }

    // MARK: Definitions

    /// The problems of a definition; one given without a trigger is checked as a manual flow (these tests are about
    /// other fields).
    func validate(_ text: String) -> [ValidationProblem] {
        guard var value = try? json(text) else {
            Issue.record("not JSON: \(text)")
            return []
        }
        if case .object(var fields) = value, fields["trigger"] == nil {
            fields["trigger"] = ["manual": true]
            value = .object(fields)
        }
        if case .failure(let failure) = FlowValidator.validate(value) { return failure.problems }
        return []
    }

    func step(_ extra: String) -> String {
        #"{"id":"f","trigger":{"manual":true},"steps":[{"id":"a","action":"transform","with":{"value":1}\#(extra)}]}"#
    }

    /// Slipped through as "$: could not be read" (or, with huge timeouts and delays, on to Int conversions in
    /// the engine): integer fields with fractions or past Int, and every bound of the retry policy.
    @Test(arguments: [
        (#","retry":{"max_attempts":1e19}"#, "steps[0].retry.max_attempts"),
        (#","retry":{"max_attempts":1.5}"#, "steps[0].retry.max_attempts"),
        (#","retry":{"max_attempts":0}"#, "steps[0].retry.max_attempts"),
        (#","retry":{"max_attempts":101}"#, "steps[0].retry.max_attempts"),
        (#","retry":{"initial_ms":-1}"#, "steps[0].retry.initial_ms"),
        (#","retry":{"initial_ms":1e300}"#, "steps[0].retry.initial_ms"),
        (#","retry":{"max_ms":86400001}"#, "steps[0].retry.max_ms"),
        (#","retry":{"initial_ms":500,"max_ms":100}"#, "steps[0].retry.max_ms"),
        (#","timeout_sec":1e19"#, "steps[0].timeout_sec"),
        (#","timeout_sec":0"#, "steps[0].timeout_sec"),
        (#","timeout_sec":604801"#, "steps[0].timeout_sec"),
        (#","depends_on":["\#(String(repeating: "x", count: 300))"]"#, "steps[0].depends_on[0]"),
        (#","when":"\#(String(repeating: "(", count: 40))1\#(String(repeating: ")", count: 40))""#, "steps[0].when"),
        (#","when":"\#(String(repeating: "1||", count: 1400))1""#, "steps[0].when"),
    ])
    func stepBoundsAreNamedByPath(_ extra: String, _ path: String) {
        let problems = validate(step(extra))
        #expect(problems.contains { $0.path == path }, "\(problems)")
        #expect(!problems.contains { $0.path == "$" }, "\(problems)")
    }

    @Test func flowBoundsAreNamedByPath() {
        let defaults =
            #"{"id":"f","defaults":{"retry":{"initial_ms":2.5},"timeout_sec":-1},"run_timeout_sec":1e300,"trigger":{"interval":"infs"},"steps":[{"id":"a","action":"transform","with":{"value":1}}]}"#
        let paths = Set(validate(defaults).map(\.path))
        #expect(paths == ["defaults.retry.initial_ms"], "the decoder stops at the first bad integer")
        let rest =
            #"{"id":"f","defaults":{"timeout_sec":-1},"run_timeout_sec":1e300,"trigger":{"interval":"infs"},"steps":[{"id":"a","action":"transform","with":{"value":1}}]}"#
        #expect(Set(validate(rest).map(\.path)) == ["defaults.timeout_sec", "run_timeout_sec", "trigger.interval"])
    }

    /// Slipped through, then trapped in the engine (Int(infinity) when waiting): a delay of `infs` or `1e400s`.
    @Test(arguments: [#""infs""#, #""1e400s""#, #""31d""#, #""0s""#, "30"])
    func literalDelaysAreChecked(_ duration: String) {
        let text = #"{"id":"f","steps":[{"id":"d","action":"delay","with":{"duration":\#(duration)}}]}"#
        #expect(validate(text).contains { $0.path == "steps[0].with.duration" })
    }

    @Test func templatedAndNumericDelays() {
        #expect(
            validate(#"{"id":"f","steps":[{"id":"d","action":"delay","with":{"duration":"{{input.wait}}"}}]}"#).isEmpty)
        #expect(validate(#"{"id":"f","steps":[{"id":"d","action":"delay","with":{"duration":"1.5h"}}]}"#).isEmpty)
        #expect(
            validate(#"{"id":"f","steps":[{"id":"d","action":"delay","with":{"seconds":1e300}}]}"#).contains {
                $0.path == "steps[0].with.seconds"
            })
        #expect(
            validate(#"{"id":"f","steps":[{"id":"d","action":"delay","with":{"ms":-1}}]}"#).contains {
                $0.path == "steps[0].with.ms"
            })
    }

    @Test func definitionSizeStepsInputsAndDepthAreLimited() {
        let steps = (0...Limits.stepsPerFlow).map { #"{"id":"s\#($0)","action":"transform","with":{"value":1}}"# }
            .joined(separator: ",")
        #expect(validate(#"{"id":"f","steps":[\#(steps)]}"#).map(\.path) == ["steps"])
        let inputs = (0...Limits.inputsPerFlow).map { #""i\#($0)":{}"# }.joined(separator: ",")
        #expect(validate(#"{"id":"f","inputs":{\#(inputs)},"steps":[]}"#).map(\.path) == ["inputs"])
        let big = String(repeating: "x", count: Limits.definitionBytes)
        let bigProblems = validate(#"{"id":"f","steps":[{"id":"a","action":"transform","with":{"value":"\#(big)"}}]}"#)
        #expect(
            bigProblems.map(\.path) == ["$"]
                && bigProblems[0].message.contains("at most \(Limits.definitionBytes) bytes"))
        let nested = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(
            validate(#"{"id":"f","steps":[{"id":"a","action":"transform","with":{"value":\#(nested)}}]}"#).map(\.path)
                == ["$"])
    }

    @Test func nonFiniteNumbersBuiltInCodeAreNamed() {
        let value: JSONValue = [
            "id": "f", "steps": [["id": "a", "action": "transform", "with": ["value": .number(.nan)]]],
        ]
        guard case .failure(let failure) = FlowValidator.validate(value) else {
            Issue.record("accepted NaN")
            return
        }
        #expect(failure.problems.contains { $0.path == "steps[0].with.value" })
    }

    @Test func theExamplesStillValidate() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../examples/flows")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }
        #expect(!files.isEmpty)
        for file in files {
            let bytes = try Data(contentsOf: directory.appendingPathComponent(file))
            let value = try JSONTree.parse(bytes)
            if case .failure(let failure) = FlowValidator.validate(value) {
                Issue.record("\(file): \(failure.problems)")
            }
        }
    }

    /// Every crashing or known-bad input kept in the fuzz corpora stays harmless.
    @Test func theFuzzCorporaAreHarmless() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../fuzz/corpus")
        var count = 0
        for target in try FileManager.default.contentsOfDirectory(atPath: root.path) {
            let directory = root.appendingPathComponent(target)
            for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
                let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(file)))
                let text = String(decoding: bytes, as: UTF8.self)
                if let value = try? JSONTree.parse(bytes) {
                    _ = FlowValidator.validate(value)
                    _ = try? Template.render(value, context: value)
                    #expect((try? JSONTree.parse(Array(value.compactJSON.utf8))) == value, "\(target)/\(file)")
                }
                _ = decodeInbound(bytes, expectedTypes: ["AssistantCommandIssued"], codec: EventCodec())
                _ = (try? Condition.parse(text))?.holds(in: .null)
                _ = CronCheck.problem(text)
                _ = DurationText.parse(text)
                _ = Timestamp.parse(text).map(Timestamp.format)
                count += 1
            }
        }
        #expect(count > 50)
    }
}
