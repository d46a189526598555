import Foundation
import Synchronization

/// When a circuit opens and for how long it stays open.
public struct CircuitBreakerSettings: Sendable {
    public var failureThreshold = 5
    public var coolDown: Duration = .seconds(30)
    public init() {}
}

/// One circuit breaker per action (and per host for `http.request`): after `failureThreshold` consecutive failures
/// calls fail fast for `coolDown`, then one probe is let through; its success closes the circuit again. Time is read
/// from `clock`, so a test can move it on instead of waiting out the cool-down.
public final class CircuitBreakers<C: Clock & Sendable>: Sendable where C.Duration == Duration, C.Instant: Sendable {
    public typealias Settings = CircuitBreakerSettings

    enum State {
        case closed(failures: Int)
        case open(until: C.Instant)
        case halfOpen(probing: Bool)
    }

    let settings: Settings
    let clock: C
    private let states = Mutex<[String: State]>([:])

    public init(settings: Settings = Settings(), clock: C) {
        self.settings = settings
        self.clock = clock
    }

    /// Nil when a call may go ahead; otherwise why it fails fast.
    public func refuse(_ key: String) -> String? {
        let now = clock.now
        return states.withLock { states -> String? in
            switch states[key] ?? .closed(failures: 0) {
            case .closed:
                return nil
            case .open(let until):
                if now < until {
                    let seconds = Int((now.duration(to: until) / .seconds(1)).rounded(.up))
                    return
                        "the circuit for \(key) is open after \(settings.failureThreshold) consecutive failures; calls fail fast for \(seconds)s more"
                }
                states[key] = .halfOpen(probing: true)
                return nil
            case .halfOpen(let probing):
                if probing { return "the circuit for \(key) is half-open and a probe call is in flight" }
                states[key] = .halfOpen(probing: true)
                return nil
            }
        }
    }

    public func record(_ key: String, success: Bool) {
        let reopen = State.open(until: clock.now.advanced(by: settings.coolDown))
        states.withLock { states in
            if success {
                states[key] = .closed(failures: 0)
                return
            }
            switch states[key] ?? .closed(failures: 0) {
            case .closed(let failures):
                states[key] = failures + 1 >= settings.failureThreshold ? reopen : .closed(failures: failures + 1)
            case .halfOpen, .open:
                states[key] = reopen
            }
        }
    }

    /// `closed`, `open` or `half_open`, for health and tests.
    public func state(_ key: String) -> String {
        let now = clock.now
        return states.withLock { states in
            switch states[key] ?? .closed(failures: 0) {
            case .closed: return "closed"
            case .open(let until): return now < until ? "open" : "half_open"
            case .halfOpen: return "half_open"
            }
        }
    }
}

extension CircuitBreakers where C == ContinuousClock {
    /// Breakers on the real clock, as the engine runs them.
    public convenience init(settings: Settings = Settings()) { self.init(settings: settings, clock: ContinuousClock()) }
}
