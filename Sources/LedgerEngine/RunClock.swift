public import Foundation
import LedgerCore

/// The time the run worker decides at and waits on (retry back-offs, step deadlines, run timeouts): the wall
/// clock in production; a test moves a manual one on instead of sleeping through an hour of back-off.
public protocol RunClock: Sendable {
    /// The time now.
    var now: Date { get }
    /// Suspends until `date`; throws `CancellationError` when the task is cancelled first.
    func sleep(until date: Date) async throws
}

/// The wall clock.
public struct SystemRunClock: RunClock {
    public init() {}

    public var now: Date { Date() }

    public func sleep(until date: Date) async throws {
        let wait = date.timeIntervalSinceNow
        if wait > 0 { try await Task.sleep(for: .milliseconds(wait.clampedMilliseconds + 1)) }
    }
}
