/// The limits Ledgerflow enforces at its edges (documented in README, "Limits"). Everything that arrives from
/// outside (inbound messages, definitions, HTTP bodies, service answers) is checked against these before it is
/// used, so nothing a message can hold drives a conversion, an index, a recursion or an append past what the
/// parts underneath accept.
public enum Limits {
    // MARK: Messages and the log

    /// The stream's `max_msg_size`: no message in the log is larger.
    public static let streamMessageBytes = 1 << 20
    /// An inbound message (chat command, calendar answer, run request) may be at most this large. Derived events
    /// (`FlowRunStarted` carries the trigger's data once) stay well inside the stream's limit.
    public static let inboundMessageBytes = 256 * 1024
    /// A step's output (recorded in its `StepAttemptSucceeded`) and a service's reply.
    public static let stepOutputBytes = 512 * 1024

    // MARK: Identifiers and keys

    /// CloudEvents `id`, `source`, `type`, and identifiers inside data (`signal_id`, `message_id`, `command_id`,
    /// `user.id`, idempotency keys).
    public static let identifierBytes = 256
    /// Free text people attach to a command (a cancel's reason).
    public static let reasonBytes = 2048
    /// LMDB refuses keys over 511 bytes; a dedup key longer than this is stored as its SHA-256.
    public static let dedupKeyBytes = 200
    /// Flow, step and run ids are subject tokens.
    public static let tokenCharacters = 128

    // MARK: JSON

    /// Nesting depth of an inbound document (its `data` is embedded a few levels deeper in derived events and
    /// read models, which the parser accepts up to `storedJSONDepth`).
    public static let inboundJSONDepth = 32
    /// Nesting depth of anything the engine itself parses (log events, read model states).
    public static let storedJSONDepth = 128

    // MARK: Definitions

    public static let definitionBytes = 256 * 1024
    public static let stepsPerFlow = 200
    public static let inputsPerFlow = 100
    public static let maxAttempts = 100
    /// `initial_ms` / `max_ms` of a retry policy: one day.
    public static let retryDelayMillis = 86_400_000
    /// `timeout_sec` of a step: seven days.
    public static let stepTimeoutSeconds: Double = 7 * 86_400
    /// `run_timeout_sec` of a flow and the longest `delay`: thirty days.
    public static let runTimeoutSeconds: Double = 30 * 86_400
    /// A `when` condition's text.
    public static let conditionCharacters = 4096
    /// Nesting of parentheses and `!` in a condition.
    public static let conditionDepth = 32
    /// Binary operators (`&&`, `||`, comparisons) in one condition: bounds the depth of the tree it evaluates.
    public static let conditionOperators = 256
    /// Nesting depth of a flow definition, leaving room under `storedJSONDepth` for the trigger data a template
    /// puts into a step's request and for the events that carry it.
    public static let definitionJSONDepth = 32

    // MARK: Memory

    /// HTTP requests handled at once; more are answered 503 with `Retry-After`.
    public static let httpConcurrency = 512
    /// Requests on `automation.flow.run` answered at once by one engine.
    public static let requestConcurrency = 64
    /// Nesting depth of a step's output (it is embedded a few levels deep in its event and the run's state).
    public static let stepOutputDepth = 64
    /// Bytes of cached discovery results.
    public static let discoveryCacheBytes = 8 << 20
    /// How often the engine's consumer delivers a message before it is recorded and given up.
    public static let maxDeliveries = 10
}

extension Double {
    /// This value as an `Int` when it is finite, integral and within `range`, else nil (never a trap).
    public func exactInt(in range: ClosedRange<Int> = Int.min...Int.max) -> Int? {
        guard isFinite, let value = Int(exactly: self), range.contains(value) else { return nil }
        return value
    }

    /// Milliseconds to wait for this many seconds: clamped to 0...`Limits.runTimeoutSeconds` (NaN is 0).
    public var clampedMilliseconds: Int {
        guard self.isFinite, self > 0 else { return self == .infinity ? Int(Limits.runTimeoutSeconds * 1000) : 0 }
        return Int(Swift.min(self, Limits.runTimeoutSeconds) * 1000)
    }
}

extension JSONValue {
    /// How deeply the value nests (a scalar is 0, `[]` is 1), computed without recursion.
    public var depth: Int {
        var deepest = 0
        var stack: [(JSONValue, Int)] = [(self, 0)]
        while let (value, level) = stack.popLast() {
            switch value {
            case .array(let items):
                deepest = Swift.max(deepest, level + 1)
                for item in items { stack.append((item, level + 1)) }
            case .object(let members):
                deepest = Swift.max(deepest, level + 1)
                for item in members.values { stack.append((item, level + 1)) }
            default:
                deepest = Swift.max(deepest, level)
            }
        }
        return deepest
    }
}
