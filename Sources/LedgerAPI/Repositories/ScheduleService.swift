public import Foundation
public import LedgerCore
public import LedgerEngine
public import LedgerProjections

/// What the API asks of the engine about schedules: list them, pause and resume one, backfill one.
public protocol ScheduleService: Sendable {
    func schedules(next count: Int) throws -> [JSONValue]
    func setSchedulePaused(
        _ flowID: String, paused: Bool, actor: ActorRef, reason: String?
    ) async throws
        -> ScheduleState
    func backfillSchedule(_ flowID: String, from: Date, to: Date, actor: ActorRef) async throws -> [JSONValue]
}

extension Engine: ScheduleService {}
