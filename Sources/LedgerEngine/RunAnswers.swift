import Foundation
import LedgerCore

extension Engine {
    /// Hands another service's answer to its run and returns once the run has applied it (or ignored it). A run this
    /// process is not driving is loaded from the read model; a finished run is driven again only for an answer that
    /// changes it (the late effect of an abandoned attempt: recorded, and undone when the step has a compensation).
    /// False when the run is unknown, or finished and the answer changes nothing. Throws when the read model cannot
    /// be read.
    func deliver(_ input: RunCommand, toRun runID: String, seenAt sequence: UInt64) async throws -> Bool {
        if let driver = try await driver(for: runID, seenAt: sequence) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                driver.send(.input(input, done: { continuation.resume() }))
            }
            return true
        }
        guard let state = try store.run(runID), state.isSettled, let definition = try pinnedDefinition(of: state)
        else { return false }
        let decider = RunDecider(definition: definition, registry: registry)
        guard !decider.decide(state, Self.checked(input), now: configuration.clock.now).isEmpty else { return false }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            _ = launch(
                state: state, definition: definition, resume: false,
                initial: .input(input, done: { continuation.resume() }))
        }
        return true
    }
}
