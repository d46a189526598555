import ChaosAudit
import Testing

/// The chaos harness's verdict (tools/chaos) fails when it should: fed observations with a lost trigger, a doubled
/// effect, a stuck run or a model mismatch, it says so and does not pass; re-sends under the same key are counted
/// without failing it.
@Suite struct ChaosAuditTests {
    /// Two triggers, each with its run, each step done once under its key.
    static func clean() -> ChaosObservations {
        var observed = ChaosObservations()
        observed.triggersSent = 3
        observed.accepted = [
            AcceptedTrigger(flowID: "chat", dedupKey: "sig-1"), AcceptedTrigger(flowID: "manual", dedupKey: "manual:k"),
        ]
        observed.runs = [
            RunFacts(
                runID: "r1", flowID: "chat", dedupKey: "sig-1", status: "SUCCEEDED", terminal: true,
                attemptsByKey: ["r1/call": 1, "r1/book": 2]),
            RunFacts(
                runID: "r2", flowID: "manual", dedupKey: "manual:k", status: "FAILED", terminal: true,
                attemptsByKey: ["r2/book": 1, "r2/call": 1, "r2/book~compensate": 1]),
        ]
        observed.effects = [
            EffectCalls(service: "http", idempotencyKey: "r1/call", calls: 1),
            EffectCalls(
                service: "calendar", idempotencyKey: "r1/book", calls: 2, commandIDs: ["r1/book/1": 1, "r1/book/2": 1]),
            EffectCalls(service: "calendar", idempotencyKey: "r2/book", calls: 1, commandIDs: ["r2/book/1": 1]),
            EffectCalls(service: "http", idempotencyKey: "r2/call", calls: 1),
            EffectCalls(
                service: "calendar", idempotencyKey: "r2/book~compensate", calls: 1,
                commandIDs: ["r2/book~compensate/1": 1]),
        ]
        observed.kills = 4
        observed.natsRestarts = 2
        observed.pauses = 1
        return observed
    }

    @Test func aCleanRunPassesWithItsSummaryLine() {
        let verdict = auditChaos(Self.clean())
        #expect(verdict.passed)
        #expect(verdict.problems.isEmpty)
        #expect(
            verdict.summaryLine
                == "chaos: triggers=3 accepted=2 runs_terminal=2 lost=0 doubled_effects=0 resent=0 model_mismatches=0 kills=4 nats_restarts=2 pauses=1"
        )
    }

    @Test func anAcceptedTriggerWithoutARunIsLost() {
        var observed = Self.clean()
        observed.accepted.append(AcceptedTrigger(flowID: "chat", dedupKey: "sig-2"))
        let verdict = auditChaos(observed)
        #expect(verdict.lost == 1)
        #expect(!verdict.passed)
        #expect(verdict.problems.contains { $0.contains("sig-2") })
    }

    @Test func aRunThatNeverFinishedIsLost() {
        var observed = Self.clean()
        observed.runs[0].terminal = false
        observed.runs[0].status = "RUNNING"
        let verdict = auditChaos(observed)
        #expect(verdict.lost == 1)
        #expect(verdict.runsTerminal == 1)
        #expect(!verdict.passed)
    }

    @Test func aStepDoneUnderASecondKeyIsADoubledEffect() {
        var observed = Self.clean()
        observed.runs[0].attemptsByKey["r1/call/g1"] = 1
        observed.effects.append(EffectCalls(service: "http", idempotencyKey: "r1/call/g1", calls: 1))
        let verdict = auditChaos(observed)
        #expect(verdict.doubledEffects == 1)
        #expect(!verdict.passed)
    }

    @Test func anEffectTheLogHasNoAttemptForIsADoubledEffect() {
        var observed = Self.clean()
        observed.effects.append(EffectCalls(service: "http", idempotencyKey: "r9/call", calls: 1))
        observed.effects.append(EffectCalls(service: "http", idempotencyKey: "", calls: 2))
        let verdict = auditChaos(observed)
        #expect(verdict.doubledEffects == 2)
        #expect(!verdict.passed)
    }

    @Test func aTriggerWithTwoRunsIsADoubledEffect() {
        var observed = Self.clean()
        observed.runs.append(
            RunFacts(
                runID: "r3", flowID: "chat", dedupKey: "sig-1", status: "SUCCEEDED", terminal: true, attemptsByKey: [:])
        )
        let verdict = auditChaos(observed)
        #expect(verdict.doubledEffects == 1)
        #expect(!verdict.passed)
    }

    @Test func reSendsUnderTheSameKeyAreCountedAndDoNotFail() {
        var observed = Self.clean()
        // The calendar got attempt 1 of r2/book twice (a takeover re-sent it); the HTTP target got r1/call three
        // times for its one attempt.
        observed.effects[2] = EffectCalls(
            service: "calendar", idempotencyKey: "r2/book", calls: 2, commandIDs: ["r2/book/1": 2])
        observed.effects[0] = EffectCalls(service: "http", idempotencyKey: "r1/call", calls: 3)
        let verdict = auditChaos(observed)
        #expect(verdict.resent == 3)
        #expect(verdict.doubledEffects == 0)
        #expect(verdict.passed)
    }

    @Test func aModelMismatchFails() {
        var observed = Self.clean()
        observed.modelMismatches = ["worker w1: runs/r1: different value"]
        let verdict = auditChaos(observed)
        #expect(verdict.modelMismatches == 1)
        #expect(!verdict.passed)
    }

    @Test func nothingAcceptedProvesNothing() {
        var observed = ChaosObservations()
        observed.triggersSent = 5
        #expect(!auditChaos(observed).passed)
    }
}
