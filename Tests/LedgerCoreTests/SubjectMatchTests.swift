import Testing

@testable import LedgerCore

/// `subjectMatches` and `JSONValue[path:]` walk their strings in place; these hold them equal to the forms that
/// split the strings into arrays first (what they were).
@Suite struct SubjectMatchTests {
    /// The matcher as it was: both split on "." (empty tokens kept).
    static func splitMatch(_ pattern: String, _ subject: String) -> Bool {
        let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let s = subject.split(separator: ".", omittingEmptySubsequences: false)
        for (i, token) in p.enumerated() {
            if token == ">" { return s.count > i }
            guard i < s.count else { return false }
            if token != "*" && token != s[i] { return false }
        }
        return p.count == s.count
    }

    @Test func knownSubjects() {
        #expect(subjectMatches(pattern: "ledger.>", subject: "ledger.run.r1"))
        #expect(subjectMatches(pattern: "ledger.>", subject: "ledger.x"))
        #expect(!subjectMatches(pattern: "ledger.>", subject: "ledger"))
        #expect(subjectMatches(pattern: "assistant.*.issued", subject: "assistant.command.issued"))
        #expect(!subjectMatches(pattern: "assistant.*.issued", subject: "assistant.command.issued.x"))
        #expect(!subjectMatches(pattern: "assistant.*", subject: "assistant"))
        #expect(subjectMatches(pattern: "a.b", subject: "a.b"))
        #expect(!subjectMatches(pattern: "a.b", subject: "a.bb"))
        #expect(!subjectMatches(pattern: "a.bb", subject: "a.b"))
        #expect(subjectMatches(pattern: "", subject: ""))
        #expect(!subjectMatches(pattern: "", subject: "a"))
        #expect(subjectMatches(pattern: "a..b", subject: "a..b"))
        #expect(subjectMatches(pattern: "*.*", subject: "."))
        // Bytes, as nats-server compares them: the same text in another normal form is another subject.
        #expect(subjectMatches(pattern: "caf\u{E9}.x", subject: "caf\u{E9}.x"))
        #expect(!subjectMatches(pattern: "caf\u{E9}.x", subject: "cafe\u{301}.x"))
        // A "." is a separator whatever follows it (splitting by characters took ".\u{301}" for one character).
        #expect(subjectMatches(pattern: "ledger.>", subject: "ledger.\u{301}x"))
        #expect(!subjectMatches(pattern: "*", subject: "a.\u{301}"))
        #expect(subjectMatches(pattern: "*.y", subject: "x\u{600}.y"))
    }

    @Test func walkingInPlaceMatchesAsSplittingDid() {
        var random = JSONCodecTests.Random(state: 20_261_202)
        let alphabet: [Character] = ["a", "b", ".", "*", ">", "é"]
        func text() -> String {
            String((0..<random.int(0...7)).map { _ in alphabet[random.int(0...(alphabet.count - 1))] })
        }
        var matched = 0
        for _ in 0..<200_000 {
            let (pattern, subject) = (text(), text())
            let expected = Self.splitMatch(pattern, subject)
            #expect(subjectMatches(pattern: pattern, subject: subject) == expected, "\(pattern) ~ \(subject)")
            if expected { matched += 1 }
        }
        #expect(matched > 1000)
    }

    /// The path lookup as it was.
    static func splitLookup(_ value: JSONValue, _ path: String) -> JSONValue? {
        var current = value
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard let next = current.child(part) else { return nil }
            current = next
        }
        return current
    }

    @Test func pathsAreLookedUpAsSplittingDid() {
        let value: JSONValue = .object([
            "": .object(["": .string("empty keys")]),
            "a": .object(["b": .array([.string("zero"), .object(["c": .number(1)])]), "": .bool(true)]),
            "list": .array([.array([.null, .string("x")])]),
            "é": .string("accented"),
        ])
        var random = JSONCodecTests.Random(state: 7)
        let alphabet: [String] = ["a", "b", "c", ".", "0", "1", "list", "é", "e\u{301}", "-1", "x"]
        var found = 0
        for _ in 0..<50_000 {
            let path = (0..<random.int(0...6)).map { _ in alphabet[random.int(0...(alphabet.count - 1))] }.joined()
            let expected = Self.splitLookup(value, path)
            #expect(value[path: path] == expected, "\(path)")
            #expect(value[path: path[...]] == expected, "\(path)")
            if expected != nil { found += 1 }
        }
        #expect(found > 100)
        #expect(value[path: "a.b.1.c"] == .number(1))
        #expect(value[path: "e\u{301}"] == .string("accented"))
        #expect(value[path: "."] == .string("empty keys"))
    }
}

/// The subject policies read a subject's tokens as NATS does: split at every "." byte and compared byte for byte. A
/// "." followed by a combining mark is one `Character`, and `==` on strings is canonical equivalence; neither may
/// hide a token from the checks.
@Suite struct SubjectTokenTests {
    static let acute = "\u{301}"

    @Test func aDotBeforeACombiningMarkStillEndsAToken() {
        #expect(
            subjectTokens("ledger.\(Self.acute)runs").map { Array($0.utf8) } == [
                Array("ledger".utf8), Array("\(Self.acute)runs".utf8),
            ])
        #expect(subjectTokens("a..\(Self.acute)").map(\.isEmpty) == [false, true, false])
        #expect(subjectTokens("").map(\.isEmpty) == [true])
    }

    @Test func emitMayNotReachTheLogOrNATSThroughACombiningMark() {
        let refusal = { (subject: String) in EmitSubjectPolicy.refusal(subject, checkInbound: false) ?? "allowed" }
        #expect(refusal("ledger.\(Self.acute)runs").contains("under ledger.>"))
        #expect(refusal("a..\(Self.acute)").contains("empty token"))
        #expect(refusal("a.*\(Self.acute)").contains("wildcard"))
        #expect(refusal("a.>\(Self.acute)").contains("wildcard"))
        #expect(refusal("$\(Self.acute)JS.API.STREAM.LIST").contains("NATS system"))
        #expect(refusal("_inbox\(Self.acute).x").contains("reply inbox"))
        #expect(refusal("_InBoX.abc").contains("reply inbox"))
        // A combining mark alone is a token like any other.
        #expect(refusal("orders.\(Self.acute)") == "allowed")
        #expect(refusal("orders.shipped") == "allowed")
    }

    @Test func replySubjectsAndAllowEntriesAreReadByBytes() {
        #expect(
            ReplySubjectPolicy.refusal("a..\(Self.acute)", eventSubjects: ["events.>"])
                == "the reply subject is not a valid subject")
        #expect(
            ReplySubjectPolicy.refusal("reply.*\(Self.acute)", eventSubjects: ["events.>"])
                == "the reply subject is not a valid subject")
        #expect(
            ReplySubjectPolicy.refusal("$\(Self.acute)JS.x", eventSubjects: ["events.>"])
                == "the reply subject is a NATS system or API subject")
        #expect(ReplySubjectPolicy.refusal("reply.\(Self.acute)", eventSubjects: ["events.>"]) == nil)
        // The stream stores the event subjects too, and the engine would take its own reply for an event.
        #expect(
            ReplySubjectPolicy.refusal("events.x", eventSubjects: ["events.>"])
                == "the reply subject is stored in the log (events.>)")
        #expect(
            ReplySubjectPolicy.refusal("orders.new", eventSubjects: ["events.>", "orders.*"])
                == "the reply subject is stored in the log (orders.*)")
        #expect(ReplySubjectPolicy.refusal("orders.new", eventSubjects: ["events.>"]) == nil)
        #expect(
            ReplySubjectPolicy.refusal("ledger.\(Self.acute)x", eventSubjects: [])
                == "the reply subject is stored in the log (ledger.>)")
        #expect(EmitSubjectPolicy.allowEntryProblem("orders.>\(Self.acute)")?.contains("not a valid token") == true)
        #expect(EmitSubjectPolicy.allowEntryProblem("orders..\(Self.acute)")?.contains("empty token") == true)
        #expect(EmitSubjectPolicy.allowEntryProblem("orders.*.\(Self.acute)") == nil)
    }

    @Test func eventSubjectsOverlapAsNATSSeesThem() {
        #expect(
            EventSubjectPolicy.problem(["events.>", "events.\(Self.acute)x"])?.contains("overlaps \"events.>\"") == true
        )
        #expect(EventSubjectPolicy.problem(["ledger.\(Self.acute)>"])?.contains("wildcard inside a token") == true)
        #expect(EventSubjectPolicy.problem(["ledger.\(Self.acute)x"])?.contains("overlaps ledger.>") == true)
        #expect(EventSubjectPolicy.problem(["$\(Self.acute)SYS.>"])?.contains("NATS system") == true)
        #expect(EventSubjectPolicy.problem(["_inbox\(Self.acute).>"])?.contains("NATS system") == true)
        #expect(EventSubjectPolicy.problem(["events..\(Self.acute)"])?.contains("is not a subject") == true)
        // The Kelvin sign is canonically equivalent to "K", but another subject for NATS.
        #expect(!EventSubjectPolicy.subjectsOverlap("orders.\u{212A}", "orders.K"))
        #expect(EventSubjectPolicy.subjectsOverlap("orders.K", "orders.K"))
        #expect(EventSubjectPolicy.subjectsOverlap("orders.*", "orders.\(Self.acute)"))
        #expect(EventSubjectPolicy.problem(["orders.\u{212A}", "orders.K"]) == nil)
    }
}
