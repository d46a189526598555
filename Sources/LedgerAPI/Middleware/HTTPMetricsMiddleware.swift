public import CoreMetrics
public import Hummingbird
import LedgerEngine
import Synchronization

/// Counts requests in `ledgerflow_http_requests_total` by route template (`/automation/runs/{runId}`, never the
/// path asked for; `unmatched` for every path no route has), method and status code, with the metrics factory it
/// is given (the engine's registry), not the process-wide one.
///
/// Hummingbird's `MetricsMiddleware` labels the same way but creates its metrics with the global `MetricsSystem`
/// only, so two servers in one process (the tests) would count into one registry; hence this one.
public struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let counters: Counters

    public init(factory: any MetricsFactory) {
        self.counters = Counters(factory: factory)
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            let response = try await next(request, context)
            counters.count(route: context.endpointPath, method: request.method, status: response.status.code)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            counters.count(route: context.endpointPath, method: request.method, status: status.code)
            throw error
        }
    }

    /// One counter per route, method and status, made the first time the three are seen.
    final class Counters: Sendable {
        struct Key: Hashable {
            var route: String
            var method: String
            var status: Int
        }
        let factory: any MetricsFactory
        let known = Mutex<[Key: CoreMetrics.Counter]>([:])

        init(factory: any MetricsFactory) {
            self.factory = factory
        }

        func count(route: String?, method: HTTPRequest.Method, status: Int) {
            let key = Key(route: Self.route(route), method: Self.method(method), status: status)
            let counter = known.withLock { known in
                if let counter = known[key] { return counter }
                let counter = CoreMetrics.Counter(
                    label: EngineMetrics.Name.httpRequests,
                    dimensions: [("route", key.route), ("method", key.method), ("status", String(key.status))],
                    factory: factory)
                known[key] = counter
                return counter
            }
            counter.increment()
        }

        /// The route's template; `unmatched` when no route took the request (Hummingbird says `NotFound`).
        static func route(_ endpoint: String?) -> String {
            guard let endpoint, endpoint != "NotFound" else { return "unmatched" }
            return endpoint
        }

        /// The method when it is a standard one, else `other` (a client may send any token).
        static func method(_ method: HTTPRequest.Method) -> String {
            switch method {
            case .get, .head, .post, .put, .delete, .patch, .options: method.rawValue
            default: "other"
            }
        }
    }
}
