import Foundation
import Synchronization

/// One circuit breaker per action (and per host for `http.request`): after `failureThreshold` consecutive failures
/// calls fail fast for `coolDown`, then one probe is let through; its success closes the circuit again.
public final class CircuitBreakers: Sendable {
    public struct Settings: Sendable {
        public var failureThreshold = 5
        public var coolDown: Duration = .seconds(30)
        public init() {}
    }

    enum State {
        case closed(failures: Int)
        case open(until: ContinuousClock.Instant)
        case halfOpen(probing: Bool)
    }

    let settings: Settings
    private let states = Mutex<[String: State]>([:])

    public init(settings: Settings = Settings()) { self.settings = settings }

    /// Nil when a call may go ahead; otherwise why it fails fast.
    public func refuse(_ key: String) -> String? {
        states.withLock { states -> String? in
            switch states[key] ?? .closed(failures: 0) {
            case .closed:
                return nil
            case .open(let until):
                let now = ContinuousClock.now
                if now < until {
                    let seconds = Int(((until - now) / .seconds(1)).rounded(.up))
                    return "the circuit for \(key) is open after \(settings.failureThreshold) consecutive failures; calls fail fast for \(seconds)s more"
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
        states.withLock { states in
            if success {
                states[key] = .closed(failures: 0)
                return
            }
            switch states[key] ?? .closed(failures: 0) {
            case .closed(let failures):
                states[key] = failures + 1 >= settings.failureThreshold ? .open(until: .now + settings.coolDown) : .closed(failures: failures + 1)
            case .halfOpen, .open:
                states[key] = .open(until: .now + settings.coolDown)
            }
        }
    }

    /// `closed`, `open` or `half_open`, for health and tests.
    public func state(_ key: String) -> String {
        states.withLock { states in
            switch states[key] ?? .closed(failures: 0) {
            case .closed: return "closed"
            case .open(let until): return ContinuousClock.now < until ? "open" : "half_open"
            case .halfOpen: return "half_open"
            }
        }
    }
}
