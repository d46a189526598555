public import Hummingbird
import LedgerCore
import LedgerEngine

/// `/automation/dlq`: the failed runs and the dead-lettered webhook deliveries, with what is needed to understand and
/// redrive them.
public struct DeadLettersController<Queries: RunQueries>: Sendable {
    let queries: Queries

    public init(queries: Queries) {
        self.queries = queries
    }

    /// Adds the route to `group` (the dead letters' path); it needs `viewer`.
    public func addRoutes(to group: RouterGroup<LedgerRequestContext>, access: AccessControl) {
        group.group().add(middleware: access.require(.viewer))
            .get(use: list)
    }

    func list(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let limit = JSONExchange.limit(request, default: 100)
        var letters = try queries.failedRuns().map(DeadLetter.init)
        letters.sort { ($0.failed_at ?? "") > ($1.failed_at ?? "") }
        return try JSONExchange.response(
            .ok, DeadLetters(dead_letters: Array(letters.prefix(limit)), total: letters.count))
    }
}

/// A failed run (`kind: run`) or a succeeded run's webhook delivery given up on (`kind: webhook`), with what is
/// needed to understand it (and redrive it).
struct DeadLetter: Encodable {
    enum Kind: String, Encodable {
        case run
        case webhook
    }

    struct Compensation: Encodable {
        var step_id: String
        var status: String
        var attempts: [AttemptRecord]
    }

    var run_id: String
    var flow_id: String
    var flow_version: Int
    var failed_at: String?
    var error: RunError?
    var failed_step: String?
    var attempts: [AttemptRecord]
    var trigger: RunTrigger
    var input: JSONValue
    var compensations: [Compensation]
    var redrives: Int
    var kind: Kind
    /// The webhook delivery (`kind: webhook`): its URL, attempts and statuses.
    var delivery: DeliveryRecord?

    init(_ run: RunState) {
        let failed = run.error?.step_id.flatMap { run.step($0) } ?? run.steps.first { $0.status == .failed }
        run_id = run.run_id
        flow_id = run.flow_id
        flow_version = run.flow_version
        failed_at = run.finished_at
        error = run.error
        failed_step = failed?.step_id
        attempts = failed?.attempts ?? []
        trigger = run.trigger
        input = run.input
        compensations = run.steps.compactMap { step in
            step.compensation.map {
                Compensation(step_id: step.step_id, status: $0.status.rawValue, attempts: $0.attempts)
            }
        }
        redrives = run.redrives
        kind = .run
        if run.status == .succeeded, let delivery = run.delivery, delivery.isDeadLetter {
            kind = .webhook
            self.delivery = delivery
            let last = delivery.attempts.last
            failed_at = last?.finished_at
            attempts = delivery.attempts
            error = RunError(
                code: last?.error?.kind.rawValue ?? "webhook_failed",
                message:
                    "the webhook delivery to \(delivery.url) failed after \(delivery.attempts.count) attempt(s): \(last?.error?.message ?? "unknown error"); "
                    + "once the receiver (or the secret) is fixed, redrive it: POST /automation/runs/\(run.run_id)/redrive"
            )
            redrives = delivery.redrives
        }
    }
}

struct DeadLetters: Encodable {
    var dead_letters: [DeadLetter]
    var total: Int
}
