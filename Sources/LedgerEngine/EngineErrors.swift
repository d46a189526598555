public import LedgerCore

/// Why the engine refused a request, in terms the HTTP API maps to SPEC §4 codes.
public enum EngineError: Error, CustomStringConvertible, Sendable {
    case flowNotFound(String)
    case runNotFound(String)
    case flowExists(String)
    case versionConflict(current: Int)
    case invalidState(String)
    case invalidDefinition([ValidationProblem])
    case badRequest(String)
    case unavailable(String)

    public var description: String {
        switch self {
        case .flowNotFound(let id): return "no flow with id \"\(id)\""
        case .runNotFound(let id): return "no run with id \"\(id)\""
        case .flowExists(let id): return "a flow with id \"\(id)\" already exists"
        case .versionConflict(let current):
            return "the definition was changed meanwhile: the current version is \(current)"
        case .invalidState(let text), .badRequest(let text), .unavailable(let text): return text
        case .invalidDefinition(let problems): return problems.map(\.description).joined(separator: "; ")
        }
    }
}

/// The outcome of asking for a run.
public enum RunStart: Sendable, Equatable {
    case started(runID: String, sequence: UInt64)
    /// The same signal (or idempotency key) already started this flow: no second run.
    case duplicate(runID: String)

    public var runID: String {
        switch self {
        case .started(let id, _), .duplicate(let id): return id
        }
    }

    public var isDuplicate: Bool {
        if case .duplicate = self { return true }
        return false
    }
}

/// A run that can never start (its subject in the log is taken by something else).
public struct StartRefused: Error, Sendable {
    public var reason: String
}

/// An event the log can never store: `too_large` (over the stream's message size) or `too_deep` (nested deeper
/// than the engine reads back).
struct UnstorableEvent: Error {
    var problem: String
    var detail: String
}

/// An error whose text is meant for a person.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
