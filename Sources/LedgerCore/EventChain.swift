/// The hash chain of a run's (or a flow's) subject: every event Ledgerflow appends to `ledger.run.<id>` or
/// `ledger.flow.<id>` carries `prevhash`, `sha256:<hex>` of the exact stored bytes of the message before it on the
/// same subject; the subject's first event carries none. A message deleted from the middle of a subject, or one
/// changed, shows as a `prevhash` that does not match (see `ChainVerifier`, `ledgerflow verify`).
public enum EventChain {
    /// The CloudEvents extension attribute (lowercase letters only, as CloudEvents requires).
    public static let attribute = "prevhash"
    public static let prefix: StaticString = "sha256:"

    /// `sha256:<hex>` of `payload`: what the next event on the same subject carries as `prevhash`.
    public static func hash(of payload: some Collection<UInt8>) -> String {
        SHA256.hexDigits(SHA256.hash(payload), prefix: prefix)
    }

    /// Whether messages on `subject` are chained (runs' and flows' subjects).
    public static func isChained(_ subject: String) -> Bool {
        subject.hasPrefix(Subjects.runPrefix) || subject.hasPrefix(Subjects.flowPrefix)
    }
}

/// The last message of a subject as its appender knows it: where it is and its hash, so the next append can carry
/// `prevhash` without reading it back.
public struct ChainLink: Sendable, Equatable {
    public var sequence: UInt64
    public var hash: String

    public init(sequence: UInt64, hash: String) {
        self.sequence = sequence
        self.hash = hash
    }

    /// The link of `payload` stored at `sequence`.
    public init(sequence: UInt64, payload: some Collection<UInt8>) {
        self.init(sequence: sequence, hash: EventChain.hash(of: payload))
    }
}
