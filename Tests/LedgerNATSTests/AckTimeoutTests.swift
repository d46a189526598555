import Testing

@testable import LedgerNATS

/// The acknowledgement timeout handed to cnats (`MaxWait`, whole milliseconds, where 0 means "wait forever").
struct AckTimeoutTests {
    @Test(arguments: [
        (Duration.seconds(10), Int64(10_000)),
        (.seconds(1), 1_000),
        (.milliseconds(1_500), 1_500),
        (.milliseconds(250), 250),
        (.microseconds(1_200), 2),
        (.microseconds(1), 1),
        (.nanoseconds(1), 1),
    ])
    func keepsFractionsOfASecondAndRoundsUp(duration: Duration, expected: Int64) {
        #expect(JetStreamPublisher.milliseconds(duration) == expected)
    }

    @Test(arguments: [Duration.zero, .milliseconds(-5), .seconds(-3)])
    func neverBecomesWaitForever(duration: Duration) {
        #expect(JetStreamPublisher.milliseconds(duration) == 1)
    }

    @Test func aDurationTooLongForCNATSWaitsAsLongAsItCan() {
        #expect(JetStreamPublisher.milliseconds(.seconds(Int64.max / 10)) == Int64.max)
        #expect(JetStreamPublisher.milliseconds(.seconds(Int64.max / 1000 - 1)) > 0)
    }
}
