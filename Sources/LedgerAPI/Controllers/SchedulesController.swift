import Foundation
public import Hummingbird
import LedgerCore
import LedgerEngine
import LedgerProjections

/// `/automation/schedules`: every schedule (`viewer`), a preview of a cron expression (`viewer`), pause, resume and
/// backfill (`operator`).
public struct SchedulesController<Service: ScheduleService>: Sendable {
    let service: Service

    public init(service: Service) {
        self.service = service
    }

    public func addRoutes(to group: RouterGroup<LedgerRequestContext>, access: AccessControl) {
        group.group().add(middleware: access.require(.viewer))
            .get(use: list)
            .get("preview", use: preview)
        group.group().add(middleware: access.require(.`operator`))
            .post("{id}/pause", use: pause)
            .post("{id}/resume", use: resume)
            .post("{id}/backfill", use: backfill)
    }

    func list(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        try JSONExchange.response(.ok, ["schedules": try service.schedules(next: 3)])
    }

    /// `?cron=&timezone=&count=&from=` (or `interval=` instead of `cron=`): the next firings, RFC 3339 with offsets.
    func preview(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let timezone = query.get("timezone")
        let spec: ScheduleSpec
        do throws(CronProblem) {
            if let cron = query.get("cron") {
                spec = try .cron(cron, timezone: timezone)
            } else if let interval = query.get("interval") {
                spec = try .interval(interval)
            } else {
                throw CronProblem(message: "give cron= (a five-field cron expression) or interval= (such as 15m)")
            }
        } catch {
            throw Problem.badRequest("\(error.message).")
        }
        let zone = (try? ScheduleSpec.zone(timezone)) ?? TimeZone(secondsFromGMT: 0)!
        let count = try Self.count(query.get("count"))
        let from = try Self.from(query.get("from"))
        let firings = spec.preview(after: from.addingTimeInterval(-0.001), count: count)
        return try JSONExchange.response(
            .ok,
            [
                "timezone": JSONValue.string(timezone ?? "UTC"),
                "from": .string(RFC3339.string(from, in: zone)),
                "firings": .array(firings.map { .string(RFC3339.string($0, in: zone)) }),
            ])
    }

    static func count(_ text: String?) throws -> Int {
        guard let text else { return 10 }
        guard text.utf8.count <= 6, let count = Int(text), count >= 1, count <= ScheduleSpec.maxCount else {
            throw Problem.badRequest("count must be a whole number from 1 to \(ScheduleSpec.maxCount).")
        }
        return count
    }

    /// From now, or from an RFC 3339 time with its offset in years 1970-2199.
    static func from(_ text: String?) throws -> Date {
        guard let text else { return Date() }
        guard let date = RFC3339.parse(text) else {
            throw Problem.badRequest(
                "from must be an RFC 3339 time with its offset, such as 2026-03-29T00:00:00+01:00 or 2026-03-29T00:00:00Z."
            )
        }
        guard date.timeIntervalSince1970 >= 0, date.timeIntervalSince1970 < 7_258_118_400 else {
            throw Problem.badRequest("from must lie between 1970 and 2199.")
        }
        return date
    }

    func pause(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        try await change(request, context, paused: true)
    }

    func resume(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        try await change(request, context, paused: false)
    }

    func change(_ request: Request, _ context: LedgerRequestContext, paused: Bool) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let body = try await JSONExchange.optionalObject(request)
        let reason = try JSONExchange.shortString(body, "reason", limit: Limits.reasonBytes)
        let state = try await refusingAsProblem {
            try await service.setSchedulePaused(id, paused: paused, actor: grant.actor, reason: reason)
        }
        return try JSONExchange.response(
            .ok, ["flow_id": JSONValue.string(id), "paused": .bool(state.paused)])
    }

    /// `{from, to}`: starts the firings between them that have no outcome yet (at most 1000).
    func backfill(_ request: Request, _ context: LedgerRequestContext) async throws -> Response {
        let grant = try context.requireGrant()
        let id = try context.parameters.require("id")
        let body = try await JSONExchange.body(request)
        func time(_ name: String) throws -> Date {
            guard let value = body[name] else {
                throw Problem.badRequest(
                    "The body must be {\"from\": ..., \"to\": ...}: \(name) is missing. Give RFC 3339 times with their offsets, such as 2026-03-29T00:00:00Z."
                )
            }
            guard let text = value.stringValue, text.utf8.count <= 64, let date = RFC3339.parse(text) else {
                throw Problem.badRequest(
                    "\(name) is not an RFC 3339 time with its offset; give one such as 2026-03-29T00:00:00Z or 2026-03-29T02:00:00+02:00."
                )
            }
            return date
        }
        let (from, to) = (try time("from"), try time("to"))
        let started = try await refusingAsProblem {
            try await service.backfillSchedule(id, from: from, to: to, actor: grant.actor)
        }
        return try JSONExchange.response(.ok, ["flow_id": JSONValue.string(id), "firings": .array(started)])
    }
}
