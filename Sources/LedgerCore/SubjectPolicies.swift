import Foundation

/// Which subjects `emit` may publish on. A pure function, used at definition validation and again at run time.
public enum EmitSubjectPolicy {
    public static let maxBytes = 256

    /// The engine's inbound subjects: publishing there would feed a run's own events back into the engine.
    public static let engineInbound = [
        Subjects.assistantCommandIssued, Subjects.calendarEvents, Subjects.flowRunRequest, Subjects.events,
        Subjects.notificationEvents,
    ]

    /// The subjects the engine publishes its actions' commands and its outputs on (the stream stores all but
    /// `discovery.search`): an event emitted there would pass for one of Ledgerflow's own commands or outputs, under
    /// no run (a calendar command with a `command_id` of the flow author's choosing, an output for the chat).
    public static let engineOutbound = [
        Subjects.calendarCommands, Subjects.notificationSend, Subjects.outputProduced, Subjects.discoverySearch,
    ]

    /// Why `emit` may not publish on `subject`, or nil when it may. `allowed` lists inbound and outbound subjects
    /// the operator permits (`--emit-allow`); `checkInbound: false` skips those two rules (definitions are checked
    /// before the engine's settings are known).
    public static func refusal(
        _ subject: String, allowed: [String] = [], checkInbound: Bool = true, eventSubjects: [String] = []
    ) -> String? {
        let shown = subject.count > 80 ? "\"\(subject.prefix(80))…\"" : "\"\(subject)\""
        if subject.isEmpty { return "the subject is empty: write the subject to publish on, e.g. orders.shipped" }
        if subject.utf8.count > maxBytes {
            return "the subject \(shown) is \(subject.utf8.count) bytes; a subject may be at most \(maxBytes) bytes"
        }
        if let bad = subject.unicodeScalars.first(where: {
            $0.properties.isWhitespace || $0.properties.generalCategory == .control
                || $0.properties.generalCategory == .format
        }) {
            return
                "the subject \(shown) holds a space or control character (U+\(String(bad.value, radix: 16, uppercase: true))); "
                + "a subject is tokens of visible characters separated by \".\""
        }
        let tokens = subjectTokens(subject)
        if tokens.contains(where: \.isEmpty) {
            return
                "the subject \(shown) has an empty token (a leading or trailing \".\", or \"..\"); write tokens separated by single dots"
        }
        if subject.utf8.contains(UInt8(ascii: "*")) || subject.utf8.contains(UInt8(ascii: ">")) {
            return
                "the subject \(shown) holds a wildcard (\"*\" or \">\"); a published event needs one concrete subject"
        }
        if subject.utf8.first == UInt8(ascii: "$") {
            return
                "the subject \(shown) is a NATS system or API subject ($JS, $KV, $O, $SYS, ...); emit may not publish there, "
                + "choose an application subject such as orders.shipped"
        }
        if isInboxLike(subject) {
            return
                "the subject \(shown) is a reply inbox (_INBOX...); emit may not answer other clients' requests, choose an application subject"
        }
        if sameBytes(tokens[0], "ledger") {
            return
                "the subject \(shown) is under ledger.>, Ledgerflow's own log; emit may not write there, choose an application subject"
        }
        guard checkInbound, !allowed.contains(where: { subjectMatches(pattern: $0, subject: subject) }) else {
            return nil
        }
        if let inbound = (engineInbound + eventSubjects).first(where: { subjectMatches(pattern: $0, subject: subject) })
        {
            return
                "the subject \(shown) is one the engine consumes (\(inbound)), so the event would feed back into Ledgerflow; "
                + "choose another subject, or start the engine with --emit-allow \(subject) (or LEDGERFLOW_EMIT_ALLOW) if this is meant"
        }
        if let outbound = engineOutbound.first(where: { subjectMatches(pattern: $0, subject: subject) }) {
            return
                "the subject \(shown) is one the engine publishes its own commands or outputs on (\(outbound)), so the event "
                + "would pass for one of Ledgerflow's; use the step action made for it (calendar.*, notify, "
                + "discovery.search, the flow's output), or start the engine with --emit-allow \(subject) "
                + "(or LEDGERFLOW_EMIT_ALLOW) if this is meant"
        }
        return nil
    }

    /// Checks an `--emit-allow` entry: a subject, wildcards allowed as whole tokens.
    public static func allowEntryProblem(_ entry: String) -> String? {
        let tokens = subjectTokens(entry)
        if entry.isEmpty || tokens.contains(where: \.isEmpty) {
            return "emit allowlist entry \"\(entry)\" has an empty token"
        }
        if let bad = tokens.enumerated().first(where: { i, t in
            (t.utf8.contains(UInt8(ascii: "*")) && !sameBytes(t, "*"))
                || (t.utf8.contains(UInt8(ascii: ">")) && (!sameBytes(t, ">") || i != tokens.count - 1))
        }) {
            return
                "emit allowlist entry \"\(entry)\": \"\(bad.element)\" is not a valid token (\"*\" and \">\" stand alone, \">\" last)"
        }
        if entry.unicodeScalars.contains(where: {
            $0.properties.isWhitespace || $0.properties.generalCategory == .control
        }) {
            return "emit allowlist entry \"\(entry)\" holds a space or control character"
        }
        return nil
    }
}

/// Where the engine may send a reply to a request (`automation.flow.run`): the requester chooses the reply subject,
/// so it must not be a subject the log stores or a NATS API subject, or a request could write into the log (or
/// drive JetStream) with the engine's credentials.
public enum ReplySubjectPolicy {
    /// Why the engine may not reply on `subject`, or nil when it may. `eventSubjects` are the engine's
    /// `--event-subjects`: the stream stores them too, and the engine would consume its own reply as an event.
    public static func refusal(_ subject: String, eventSubjects: [String]) -> String? {
        let tokens = subjectTokens(subject)
        if subject.isEmpty || subject.utf8.count > EmitSubjectPolicy.maxBytes || tokens.contains(where: \.isEmpty)
            || subject.utf8.contains(UInt8(ascii: "*")) || subject.utf8.contains(UInt8(ascii: ">"))
            || subject.unicodeScalars.contains(where: {
                $0.properties.isWhitespace || $0.properties.generalCategory == .control
            })
        {
            return "the reply subject is not a valid subject"
        }
        if subject.utf8.first == UInt8(ascii: "$") { return "the reply subject is a NATS system or API subject" }
        if let stored = (Subjects.streamSubjects + eventSubjects).first(where: {
            subjectMatches(pattern: $0, subject: subject)
        }) {
            return "the reply subject is stored in the log (\(stored))"
        }
        return nil
    }
}

/// NATS subject matching with `*` and `>`.
public func subjectMatches(pattern: String, subject: String) -> Bool {
    // Compared byte by byte, token by token, as nats-server matches subjects (and with no allocation: the engine
    // asks this of every message it sends and receives).
    var pattern = pattern
    var subject = subject
    return pattern.withUTF8 { p in subject.withUTF8 { s in subjectMatches(pattern: p, subject: s) } }
}

func subjectMatches(pattern p: UnsafeBufferPointer<UInt8>, subject s: UnsafeBufferPointer<UInt8>) -> Bool {
    let dot = UInt8(ascii: ".")
    var pi = 0
    var si = 0
    // Whether the subject's tokens are all matched already (`pi` is past its last token).
    var subjectDone = false
    while true {
        var pe = pi
        while pe < p.count, p[pe] != dot { pe += 1 }
        let isOne = pe - pi == 1
        if isOne, p[pi] == UInt8(ascii: ">") { return !subjectDone }
        if subjectDone { return false }
        var se = si
        while se < s.count, s[se] != dot { se += 1 }
        if !(isOne && p[pi] == UInt8(ascii: "*")) {
            guard pe - pi == se - si else { return false }
            for offset in 0..<(pe - pi) where p[pi + offset] != s[si + offset] { return false }
        }
        if pe == p.count { return se == s.count }
        pi = pe + 1
        if se == s.count { subjectDone = true } else { si = se + 1 }
    }
}

/// A subject's tokens as NATS reads them: split at every "." byte. Not by `Character`: a "." followed by a combining
/// mark is one `Character`, yet it still ends a token for NATS ("ledger.\u{301}x" is under `ledger.>`).
func subjectTokens(_ subject: String) -> [Substring] {
    subject.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map { Substring($0) }
}

/// Whether two tokens are the same bytes, as NATS compares them (`==` on strings is canonical equivalence: the
/// Kelvin sign equals "K" there, not for NATS).
func sameBytes(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool { a.utf8.elementsEqual(b.utf8) }

/// Whether a subject starts with `_INBOX`, in any case of its ASCII letters (a reply inbox, or made to look like one).
func isInboxLike(_ subject: String) -> Bool {
    let prefix = subject.utf8.prefix(6).map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
    return prefix.elementsEqual("_INBOX".utf8)
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

/// Which subjects may carry other services' events (`--event-subjects`): a pure check, run at start.
public enum EventSubjectPolicy {
    public static let maxSubjects = 32

    /// What is wrong with `subjects`, or nil when the engine can consume them.
    public static func problem(_ subjects: [String]) -> String? {
        if subjects.isEmpty { return "give at least one subject, e.g. events.>" }
        if subjects.count > maxSubjects { return "\(subjects.count) subjects; give at most \(maxSubjects)" }
        for (index, subject) in subjects.enumerated() {
            let shown = subject.count > 80 ? "\"\(subject.prefix(80))…\"" : "\"\(subject)\""
            if subject.utf8.count > EmitSubjectPolicy.maxBytes {
                return "the subject \(shown) is longer than \(EmitSubjectPolicy.maxBytes) bytes"
            }
            let tokens = subjectTokens(subject)
            if tokens.contains(where: \.isEmpty)
                || subject.unicodeScalars.contains(where: {
                    $0.properties.isWhitespace || $0.properties.generalCategory == .control
                })
            {
                return "\(shown) is not a subject: write tokens separated by single dots, e.g. events.> or orders.*"
            }
            if tokens.dropLast().contains(where: { sameBytes($0, ">") })
                || tokens.contains(where: {
                    !sameBytes($0, ">") && !sameBytes($0, "*")
                        && ($0.utf8.contains(UInt8(ascii: ">")) || $0.utf8.contains(UInt8(ascii: "*")))
                })
            {
                return
                    "\(shown) has a wildcard inside a token or \">\" before the last token; write e.g. events.> or orders.*.created"
            }
            if subject.utf8.first == UInt8(ascii: "$") || isInboxLike(subject) || sameBytes(tokens[0], ">")
                || sameBytes(tokens[0], "*")
            {
                return
                    "\(shown) would capture NATS system, API or reply subjects; start it with an application token, e.g. events.>"
            }
            let builtIn = Subjects.streamSubjects + [Subjects.flowRunRequest, Subjects.discoverySearch]
            if let clash = builtIn.first(where: { subjectsOverlap($0, subject) }) {
                return
                    "\(shown) overlaps \(clash), which Ledgerflow already uses; choose subjects of your own, e.g. events.>"
            }
            if let other = subjects[..<index].first(where: { subjectsOverlap($0, subject) }) {
                return "\(shown) overlaps \"\(other)\" (a stream may not hold overlapping subjects); give one of them"
            }
        }
        return nil
    }

    /// Whether some subject matches both patterns.
    public static func subjectsOverlap(_ a: String, _ b: String) -> Bool {
        let x = subjectTokens(a)
        let y = subjectTokens(b)
        var i = 0
        while i < x.count, i < y.count {
            if sameBytes(x[i], ">") || sameBytes(y[i], ">") { return true }
            if !sameBytes(x[i], "*"), !sameBytes(y[i], "*"), !sameBytes(x[i], y[i]) { return false }
            i += 1
        }
        return x.count == y.count
    }
}
