/// A W3C Trace Context `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header):
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase. The CloudEvents `traceparent` extension and
/// the HTTP `traceparent` header carry it; a run keeps its trace in `FlowRunStarted.traceparent`.
public struct TraceParent: Sendable, Hashable, CustomStringConvertible {
    /// 32 lowercase hex digits, not all zero.
    public let traceID: String
    /// 16 lowercase hex digits, not all zero: the span the bearer of this traceparent is a child of.
    public let parentID: String
    /// The trace flags (bit 0: sampled).
    public let flags: UInt8

    /// The longest text `parse` reads: a version-00 traceparent is 55 characters; a later version may append
    /// fields, and anything longer than this is refused without being looked at further.
    public static let maxBytes = 256

    /// The header value, `00-<trace id>-<parent id>-<flags>`.
    public var description: String { "00-\(traceID)-\(parentID)-\(Self.hex(UInt64(flags), digits: 2))" }

    public var sampled: Bool { flags & 1 == 1 }

    /// Reads a traceparent strictly: version `00` (or a later version whose first 55 characters are in the version
    /// 00 format, followed by nothing or `-`, as the W3C text says), lowercase hex, a trace id and a parent id that
    /// are not all zero. Version `ff` is invalid. Returns why it could not be read otherwise.
    public static func parse(_ text: String) -> Result<TraceParent, TraceParentProblem> {
        let utf8 = text.utf8
        guard utf8.count <= maxBytes else {
            return .failure(TraceParentProblem("it is \(utf8.count) bytes long (a traceparent is 55)"))
        }
        let bytes = Array(utf8)
        guard bytes.count >= 55 else {
            return .failure(TraceParentProblem("it is \(bytes.count) characters long; a traceparent has 55"))
        }
        func isHex(_ range: Range<Int>) -> Bool {
            bytes[range].allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
        guard bytes[2] == 0x2D, bytes[35] == 0x2D, bytes[52] == 0x2D else {
            return .failure(TraceParentProblem("it is not version-traceid-parentid-flags separated by dashes"))
        }
        guard isHex(0..<2) else { return .failure(TraceParentProblem("its version is not two lowercase hex digits")) }
        let version = String(decoding: bytes[0..<2], as: UTF8.self)
        if version == "ff" { return .failure(TraceParentProblem("version ff is invalid")) }
        if version == "00" {
            guard bytes.count == 55 else {
                return .failure(TraceParentProblem("a version 00 traceparent is 55 characters, not \(bytes.count)"))
            }
        } else if bytes.count > 55, bytes[55] != 0x2D {
            return .failure(TraceParentProblem("version \(version) has something other than '-' after its flags"))
        }
        guard isHex(3..<35) else {
            return .failure(TraceParentProblem("its trace id is not 32 lowercase hex digits"))
        }
        guard isHex(36..<52) else {
            return .failure(TraceParentProblem("its parent id is not 16 lowercase hex digits"))
        }
        guard isHex(53..<55) else { return .failure(TraceParentProblem("its flags are not two lowercase hex digits")) }
        guard bytes[3..<35].contains(where: { $0 != 0x30 }) else {
            return .failure(TraceParentProblem("its trace id is all zeros"))
        }
        guard bytes[36..<52].contains(where: { $0 != 0x30 }) else {
            return .failure(TraceParentProblem("its parent id is all zeros"))
        }
        let flags = UInt8(String(decoding: bytes[53..<55], as: UTF8.self), radix: 16) ?? 0
        return .success(
            TraceParent(
                checkedTraceID: String(decoding: bytes[3..<35], as: UTF8.self),
                parentID: String(decoding: bytes[36..<52], as: UTF8.self), flags: flags))
    }

    /// The trace id of a traceparent this engine wrote (or checked), without reading it again; nil for anything else.
    public static func traceID(in traceparent: String?) -> Substring? {
        guard let traceparent, traceparent.utf8.count == 55 else { return nil }
        return traceparent.dropFirst(3).prefix(32)
    }

    /// An inbound message's traceparent: nil when it has none; a `.failure` says why one it has is ignored.
    public static func inbound(_ text: String?) -> Result<TraceParent, TraceParentProblem>? {
        guard let text, !text.isEmpty else { return nil }
        return parse(text)
    }

    private init(checkedTraceID: String, parentID: String, flags: UInt8) {
        self.traceID = checkedTraceID
        self.parentID = parentID
        self.flags = flags
    }

    /// A traceparent in a new trace (random trace id and parent id, sampled).
    public static func newTrace() -> TraceParent {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next(upperBound: UInt64.max) | 1  // never all zero
        let low: UInt64 = generator.next()
        return TraceParent(
            checkedTraceID: hex(high, digits: 16) + hex(low, digits: 16), parentID: newSpanID(), flags: 1)
    }

    /// The same trace and flags with `spanID` (16 lowercase hex digits, not all zero) as the parent: what a child of
    /// the span `spanID` carries.
    public func child(of spanID: String) -> TraceParent {
        TraceParent(checkedTraceID: traceID, parentID: spanID, flags: flags)
    }

    /// The same trace and flags with a new random parent id: a span of this trace that no tracer records.
    public func newChild() -> TraceParent { child(of: Self.newSpanID()) }

    /// 16 random lowercase hex digits, not all zero.
    public static func newSpanID() -> String {
        var generator = SystemRandomNumberGenerator()
        return hex(generator.next(upperBound: UInt64.max) + 1, digits: 16)
    }

    static func hex(_ value: UInt64, digits: Int) -> String {
        let text = String(value, radix: 16)
        return text.count >= digits ? text : String(repeating: "0", count: digits - text.count) + text
    }
}

/// Why a traceparent could not be read, for the log line that says it was ignored.
public struct TraceParentProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
