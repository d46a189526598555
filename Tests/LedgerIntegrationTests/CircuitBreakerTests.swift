import Foundation
@testable import LedgerEngine
import Testing

@Suite struct CircuitBreakerTests {
    @Test func opensAfterRepeatedFailuresThenProbesAndCloses() async throws {
        var settings = CircuitBreakers.Settings()
        settings.failureThreshold = 3
        settings.coolDown = .milliseconds(200)
        let breakers = CircuitBreakers(settings: settings)
        for _ in 0..<3 {
            #expect(breakers.refuse("calendar.schedule_event") == nil)
            breakers.record("calendar.schedule_event", success: false)
        }
        #expect(breakers.state("calendar.schedule_event") == "open")
        #expect(breakers.refuse("calendar.schedule_event")?.contains("open after 3 consecutive failures") == true)
        #expect(breakers.refuse("discovery.search") == nil, "one breaker per action")
        try await Task.sleep(for: .milliseconds(250))
        #expect(breakers.refuse("calendar.schedule_event") == nil, "one probe goes through after the cool-down")
        #expect(breakers.refuse("calendar.schedule_event")?.contains("probe") == true, "only one")
        breakers.record("calendar.schedule_event", success: false)
        #expect(breakers.state("calendar.schedule_event") == "open", "a failed probe opens it again")
        try await Task.sleep(for: .milliseconds(250))
        #expect(breakers.refuse("calendar.schedule_event") == nil)
        breakers.record("calendar.schedule_event", success: true)
        #expect(breakers.state("calendar.schedule_event") == "closed")
        #expect(breakers.refuse("calendar.schedule_event") == nil)
    }
}
