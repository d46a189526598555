import Foundation
import LedgerCore
import LedgerTestSupport
import Testing

@testable import LedgerEngine

@Suite struct CircuitBreakerTests {
    @Test func opensAfterRepeatedFailuresThenProbesAndCloses() {
        var settings = CircuitBreakerSettings()
        settings.failureThreshold = 3
        settings.coolDown = .seconds(30)
        let clock = ManualClock()
        let breakers = CircuitBreakers(settings: settings, clock: clock)
        for _ in 0..<3 {
            #expect(breakers.refuse("calendar.schedule_event") == nil)
            breakers.record("calendar.schedule_event", success: false)
        }
        #expect(breakers.state("calendar.schedule_event") == "open")
        #expect(breakers.refuse("calendar.schedule_event")?.contains("open after 3 consecutive failures") == true)
        #expect(breakers.refuse("discovery.search") == nil, "one breaker per action")
        clock.advance(by: .seconds(29))
        #expect(
            breakers.refuse("calendar.schedule_event")?.contains("fail fast for 1s more") == true,
            "still open before the cool-down ends")
        clock.advance(by: .seconds(1))
        #expect(breakers.state("calendar.schedule_event") == "half_open")
        #expect(breakers.refuse("calendar.schedule_event") == nil, "one probe goes through after the cool-down")
        #expect(breakers.refuse("calendar.schedule_event")?.contains("probe") == true, "only one")
        breakers.record("calendar.schedule_event", success: false)
        #expect(breakers.state("calendar.schedule_event") == "open", "a failed probe opens it again")
        clock.advance(by: .seconds(30))
        #expect(breakers.refuse("calendar.schedule_event") == nil)
        breakers.record("calendar.schedule_event", success: true)
        #expect(breakers.state("calendar.schedule_event") == "closed")
        #expect(breakers.refuse("calendar.schedule_event") == nil)
    }
}

@Suite struct OutputSizeTests {
    @Test func anOutputTooLargeForTheLogFailsTheStepClearly() {
        #expect(throws: Never.self) { try StepExecutor.checkSize(1000, of: "x") }
        do {
            try StepExecutor.checkSize(StepExecutor.maxOutputBytes + 1, of: "the response of GET http://h/")
            Issue.record("accepted an output larger than the limit")
        } catch let error as StepError {
            #expect(error.kind == .outputTooLarge)
            #expect(!error.retryable)
            #expect(error.message.contains("the response of GET http://h/ is 524289 bytes"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
