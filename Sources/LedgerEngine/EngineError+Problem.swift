public import LedgerCore
import LedgerNATS

extension Problem {
    /// The problem SPEC §4 answers for an engine refusal.
    public init(_ error: EngineError) {
        switch error {
        case .flowNotFound(let id):
            self.init(
                status: 404, code: "flow_not_found", title: "Flow not found",
                detail: "No flow has the id \"\(id)\". List flows with GET /automation/flows.")
        case .runNotFound(let id):
            self.init(
                status: 404, code: "run_not_found", title: "Run not found", detail: "No run has the id \"\(id)\".")
        case .flowExists(let id):
            self.init(
                status: 409, code: "flow_exists", title: "Flow exists",
                detail: "A flow with the id \"\(id)\" exists; change it with PUT /automation/flows/\(id).")
        case .versionConflict(let current):
            self.init(
                status: 409, code: "version_conflict", title: "Version conflict",
                detail:
                    "The flow was changed meanwhile: the current version is \(current). Base your change on it and send it again."
            )
            currentVersion = current
        case .invalidState(let text):
            self.init(status: 409, code: "invalid_state", title: "Invalid state", detail: text)
        case .invalidDefinition(let problems):
            self.init(
                status: 422, code: "invalid_definition", title: "Invalid definition",
                detail: "The definition has \(problems.count) problem(s); see errors.")
            errors = problems
        case .badRequest(let text):
            self = .badRequest(text)
        case .unavailable(let text):
            self = .unavailable(text + " Retry shortly.")
        }
    }

    /// The problem for an error the engine, the ledger or NATS threw while handling a request; nil for any other
    /// error (a bug, not a refusal).
    public init?(refusal error: any Error) {
        switch error {
        case let error as Problem:
            self = error
        case let error as EngineError:
            self.init(error)
        case let error as StartRefused:
            self.init(status: 409, code: "invalid_state", title: "Run cannot start", detail: "\(error.reason).")
        case let error as NATSError where error.jetStreamError == .messageTooLarge:
            // Retrying cannot help: the request makes an event larger than the log accepts.
            self = .badRequest("The request is too large to record in the log (\(error.message)); send less data.")
        case let error as NATSError:
            self.init(.unavailable("NATS did not answer: \(error.message)."))
        default:
            return nil
        }
    }
}
