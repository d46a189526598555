public import Hummingbird
public import LedgerCore
import Synchronization

/// Bounds the requests handled at once: past `limit`, a request is answered 503 with `Retry-After` at once instead
/// of queueing without bound (each in-flight request holds its body and a task).
public struct ConcurrencyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let limit: Int
    let inFlight = InFlight()

    final class InFlight: Sendable {
        let count = Atomic<Int>(0)
    }

    public init(limit: Int = Limits.httpConcurrency) {
        self.limit = limit
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let now = inFlight.count.add(1, ordering: .relaxed).newValue
        defer { inFlight.count.subtract(1, ordering: .relaxed) }
        guard now <= limit else {
            throw Problem.unavailable(
                title: "Too many requests at once", "The server is handling \(limit) requests already; retry shortly.")
        }
        return try await next(request, context)
    }
}
