// libFuzzer target: the definition validator. Bytes that parse as JSON are validated; validation never traps,
// every problem names a path, and an accepted definition is within the limits.
import LedgerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let json = try? JSONTree.parse(UnsafeBufferPointer(start: data, count: size)) else { return 0 }
    switch FlowValidator.validate(json) {
    case .success(let definition):
        guard definition.steps.count <= Limits.stepsPerFlow else { fatalError("too many steps accepted") }
        for step in definition.steps {
            for retry in [step.retry, definition.defaults?.retry].compactMap({ $0 }) {
                for attempt in [-1, 0, 1, 7, 64, Int.max] {
                    let delay = retry.delayMillis(after: attempt, random: 0.5)
                    guard (0...Limits.retryDelayMillis).contains(delay) else {
                        fatalError("delay \(delay) out of bounds")
                    }
                }
            }
            if let t = step.timeout_sec, !(t > 0 && t <= Limits.stepTimeoutSeconds) {
                fatalError("timeout \(t) accepted")
            }
            if let when = step.when { _ = try? Condition.parse(when) }
        }
        if let t = definition.run_timeout_sec, !(t > 0 && t <= Limits.runTimeoutSeconds) {
            fatalError("run timeout \(t) accepted")
        }
    case .failure(let failure):
        guard !failure.problems.isEmpty else { fatalError("a failure without problems") }
        for problem in failure.problems where problem.path.isEmpty || problem.message.isEmpty {
            fatalError("a problem without a path or a message: \(problem)")
        }
    }
    return 0
}
