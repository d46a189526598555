/// The versions of the shapes of Ledgerflow's own events, and the upcasters that read older shapes as current.
///
/// The version travels in the CloudEvents extension attribute `schemaversion` (an integer; absent means 1), so a
/// later change to a payload never breaks a log written before it.
public struct EventSchema: Sendable {
    /// Maps `data` written at an older version of an event type to the type's current shape.
    public typealias Upcaster = @Sendable (_ data: JSONValue, _ version: Int) throws -> JSONValue

    /// The CloudEvents extension attribute that carries the version.
    public static let attribute = "schemaversion"
    /// Where a decoder's `userInfo` may hold another schema to read `LedgerEvent`s with (tests of upcasters).
    public static let userInfoKey = CodingUserInfoKey(rawValue: "ledgerflow.eventSchema")!

    /// The version of an event written without the attribute (everything before it existed).
    public static let initialVersion = 1

    /// The version written of each event type whose shape has changed (the others are at `initialVersion`).
    public var current: [String: Int]
    /// One upcaster per event type whose shape has changed: from any older version to the current one.
    public var upcasters: [String: Upcaster]

    public init(current: [String: Int], upcasters: [String: Upcaster]) {
        self.current = current
        self.upcasters = upcasters
    }

    /// Ledgerflow's events as this version writes them. Every type is still at version 1: when the shape of one
    /// changes, bump its version here and add the upcaster from the older shapes. New types start at version 1
    /// (`FlowRunAcknowledged`, `WebhookDeliveryAttemptStarted`/`Succeeded`/`Failed`, `WebhookDeliveryRedriven`), and
    /// an optional field added to a type keeps its version, since data written without it reads as it always did
    /// (`FlowRunSucceeded.webhook`: no delivery; `FlowOutputProduced.kind`: a final output).
    public static let ledger = EventSchema(current: [:], upcasters: [:])

    /// The version this Ledgerflow writes of `type`.
    public static func currentVersion(of type: String) -> Int { ledger.currentVersion(of: type) }

    /// The version this schema writes of `type`.
    public func currentVersion(of type: String) -> Int { current[type] ?? Self.initialVersion }

    /// `data` of an event of `type` written at `version`, in the current shape; an event newer than this schema
    /// (or of no valid version) is refused rather than misread.
    public func upcast(_ data: JSONValue, type: String, from version: Int) throws -> JSONValue {
        let current = currentVersion(of: type)
        guard version >= Self.initialVersion, version <= current else {
            throw EventSchemaError(type: type, version: version, current: current)
        }
        guard version < current, let upcaster = upcasters[type] else { return data }
        return try upcaster(data, version)
    }
}

/// An event whose `schemaversion` this Ledgerflow cannot read: written by a newer one, or not a valid version.
public struct EventSchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    public var type: String
    public var version: Int
    public var current: Int

    public var description: String {
        guard version >= EventSchema.initialVersion else {
            return
                "\(type.prefix(64)) has \(EventSchema.attribute) \(version), which is not a version (they start at 1)"
        }
        return "\(type.prefix(64)) is of \(EventSchema.attribute) \(version), newer than this Ledgerflow reads "
            + "(\(current)): skipped rather than misread; a newer Ledgerflow reads it"
    }
}
