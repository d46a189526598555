/// Something wrong with the log, where it is (`ledgerflow verify`).
public struct LogProblem: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
        /// An event's `prevhash` is not the hash of the previous message on its subject: a message between them was
        /// deleted, or one of them was changed or forged.
        case brokenChain = "broken_chain"
        /// A run's or flow's subject does not begin with its first event (`FlowRunStarted`, `FlowRegistered`), or
        /// its first message names a predecessor: the subject's head was deleted.
        case missingHead = "missing_head"
        /// Stream sequences with no message: deleted from the log.
        case deleted
        /// A message on a run's or flow's subject that is not a CloudEvents JSON document with `id` and `type`.
        case unreadable
    }

    public var kind: Kind
    /// Where it is: the message that shows it (for `deleted`, the first sequence missing).
    public var sequence: UInt64
    /// For `deleted`: the last sequence of the run of missing ones.
    public var through: UInt64?
    public var subject: String?
    /// For `brokenChain`: the hash of the previous message on the subject, and what the event carries instead.
    public var expected: String?
    public var found: String?
    /// What is wrong, in words.
    public var detail: String
}

/// Walks the log's messages in order (fed one at a time, as they are read) and checks, per run's and flow's subject,
/// that each event's `prevhash` is the hash of the previous message read on that subject (`EventChain`), that each
/// such subject begins with its first event, that each message there is readable, and (when the whole log is read)
/// that no stream sequence is missing. Pure: no I/O; `LogVerification` in LedgerEngine reads the log into it.
public struct LogVerifier: Sendable {
    struct Tail: Sendable {
        var sequence: UInt64
        var hash: String
        /// An event on the subject carried `prevhash`: from there on every event must.
        var chained: Bool
    }

    /// The fields of an event the chain needs.
    struct ChainFields: Decodable {
        var id: String
        var type: String
        var prevhash: String?
    }

    var tails: [String: Tail] = [:]
    /// Sequences known to be deleted, in order (from the read's own gaps, or the stream's list).
    var deletedRanges: [ClosedRange<UInt64>] = []
    /// Whether the read covers every subject, so a jump in the stream sequence is a deleted message.
    let contiguous: Bool
    var nextSequence: UInt64

    public private(set) var problems: [LogProblem] = []
    /// Messages read, and those on run and flow subjects.
    public private(set) var messages = 0
    public private(set) var chainedSubjectMessages = 0
    /// Events whose `prevhash` matched; events after a subject's first with no `prevhash` on a subject that never
    /// had one (logs written before the chain existed).
    public private(set) var linked = 0
    public private(set) var unchained = 0
    public private(set) var firstSequence: UInt64?
    public private(set) var lastSequence: UInt64?

    /// `contiguous`: the read covers the whole log from its beginning (no subject filter), so a skipped stream
    /// sequence is a deleted message. Otherwise `firstStreamSequence` (the stream's first sequence: the ones before
    /// it were removed) and `deleted` (the sequences the stream reports deleted) say what is missing.
    public init(contiguous: Bool, firstStreamSequence: UInt64 = 1, deleted: [UInt64] = []) {
        self.contiguous = contiguous
        self.nextSequence = 1
        if !contiguous {
            deletedRanges = Self.ranges(deleted.sorted())
            if firstStreamSequence > 1 { deletedRanges.insert(1...(firstStreamSequence - 1), at: 0) }
        }
    }

    public var subjects: Int { tails.count }

    /// Checks the next message read.
    public mutating func check(sequence: UInt64, subject: String, payload: some Collection<UInt8>) {
        messages += 1
        if firstSequence == nil { firstSequence = sequence }
        lastSequence = sequence
        if contiguous, sequence > nextSequence { noteDeleted(nextSequence...(sequence - 1)) }
        nextSequence = max(nextSequence, sequence + 1)
        guard EventChain.isChained(subject) else { return }
        chainedSubjectMessages += 1
        let hash = EventChain.hash(of: payload)
        let fields = try? JSONTree.decode(ChainFields.self, from: payload)
        if fields == nil {
            problems.append(
                LogProblem(
                    kind: .unreadable, sequence: sequence, subject: subject,
                    detail:
                        "the message at \(sequence) on \(subject) is not a CloudEvents JSON document with id and type (\(payload.count) bytes); Ledgerflow never appends such a message: something else wrote it"
                ))
        }
        let prevhash = fields?.prevhash
        guard let tail = tails[subject] else {
            checkHead(sequence: sequence, subject: subject, fields: fields)
            tails[subject] = Tail(sequence: sequence, hash: hash, chained: prevhash != nil)
            return
        }
        if let prevhash {
            if prevhash == tail.hash {
                linked += 1
            } else {
                let deleted = deletedBetween(tail.sequence, sequence)
                let why =
                    deleted.isEmpty
                    ? "the message at \(tail.sequence) or this one was changed, or a message between them was deleted"
                    : "sequence\(deleted.count > 1 ? "s" : "") \(deleted.map(String.init).joined(separator: ", ")) between them \(deleted.count > 1 ? "were" : "was") deleted"
                problems.append(
                    LogProblem(
                        kind: .brokenChain, sequence: sequence, subject: subject, expected: tail.hash,
                        found: prevhash,
                        detail:
                            "\(subject) at \(sequence): prevhash \(prevhash) is not the hash of the subject's previous message (at \(tail.sequence), \(tail.hash)): \(why)"
                    ))
            }
        } else if tail.chained {
            problems.append(
                LogProblem(
                    kind: .brokenChain, sequence: sequence, subject: subject, expected: tail.hash, found: nil,
                    detail:
                        "\(subject) at \(sequence): the event carries no prevhash although the subject's earlier events do: it was not appended by Ledgerflow (or by a version older than the chain)"
                ))
        } else {
            unchained += 1
        }
        tails[subject] = Tail(sequence: sequence, hash: hash, chained: tail.chained || prevhash != nil)
    }

    /// A subject's first message read: the run's or flow's first event, naming no predecessor (when the read starts
    /// at the log's beginning).
    mutating func checkHead(sequence: UInt64, subject: String, fields: ChainFields?) {
        guard let fields else { return }
        let isRun = subject.hasPrefix(Subjects.runPrefix)
        let first = isRun ? EventType.runStarted : EventType.flowRegistered
        var reasons: [String] = []
        if fields.type != first { reasons.append("it is \(fields.type), not \(first)") }
        if let prevhash = fields.prevhash {
            reasons.append("it names a previous message (\(prevhash)) that is not in the log")
        }
        guard !reasons.isEmpty else { return }
        problems.append(
            LogProblem(
                kind: .missingHead, sequence: sequence, subject: subject, found: fields.prevhash,
                detail:
                    "\(subject) begins at \(sequence), but \(reasons.joined(separator: " and ")): its first event is missing (deleted from the log, or something else wrote to the subject first)"
            ))
    }

    /// Ends the walk: `lastStreamSequence` is the stream's last sequence when reading began, so missing messages at
    /// the end of a whole-log read are found too.
    public mutating func finish(lastStreamSequence: UInt64) {
        if contiguous, lastStreamSequence >= nextSequence { noteDeleted(nextSequence...lastStreamSequence) }
        if !contiguous {
            // A filtered read: report what the stream says was deleted.
            for range in deletedRanges { appendDeleted(range) }
        }
    }

    mutating func noteDeleted(_ range: ClosedRange<UInt64>) {
        deletedRanges.append(range)
        appendDeleted(range)
    }

    mutating func appendDeleted(_ range: ClosedRange<UInt64>) {
        let count = range.upperBound - range.lowerBound + 1
        problems.append(
            LogProblem(
                kind: .deleted, sequence: range.lowerBound,
                through: range.upperBound,
                detail: count == 1
                    ? "sequence \(range.lowerBound) has no message: it was deleted from the log"
                    : "sequences \(range.lowerBound)–\(range.upperBound) (\(count)) have no message: they were deleted from the log"
            ))
    }

    /// The sequences known deleted strictly between `low` and `high` (at most 10 named).
    func deletedBetween(_ low: UInt64, _ high: UInt64) -> [UInt64] {
        var out: [UInt64] = []
        for range in deletedRanges where range.upperBound > low && range.lowerBound < high {
            var s = max(range.lowerBound, low + 1)
            while s <= min(range.upperBound, high - 1), out.count < 10 {
                out.append(s)
                s += 1
            }
        }
        return out
    }

    static func ranges(_ sorted: [UInt64]) -> [ClosedRange<UInt64>] {
        var out: [ClosedRange<UInt64>] = []
        for s in sorted {
            if let last = out.last, last.upperBound + 1 == s {
                out[out.count - 1] = last.lowerBound...s
            } else if out.last?.contains(s) != true {
                out.append(s...s)
            }
        }
        return out
    }

    /// Whether nothing is wrong.
    public var isClean: Bool { problems.isEmpty }

    /// One line: what was read and what was found.
    public var summary: String {
        let span = firstSequence.map { "sequences \($0)–\(lastSequence ?? $0)" } ?? "no messages"
        var counts: [LogProblem.Kind: Int] = [:]
        for problem in problems { counts[problem.kind, default: 0] += 1 }
        let deleted = problems.filter { $0.kind == .deleted }.reduce(UInt64(0)) {
            $0 + ($1.through ?? $1.sequence) - $1.sequence + 1
        }
        let found =
            problems.isEmpty
            ? "no problems"
            : "\(problems.count) problem\(problems.count == 1 ? "" : "s"): \(counts[.brokenChain] ?? 0) broken chain, \(counts[.missingHead] ?? 0) missing head, \(deleted) deleted, \(counts[.unreadable] ?? 0) unreadable"
        return
            "verified \(messages) messages (\(span)), \(chainedSubjectMessages) on \(subjects) run and flow subjects: \(linked) chained, \(unchained) unchained (written before the chain); \(found)"
    }
}
