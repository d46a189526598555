// The chaos harness's verdict as a pure function of what it observed (see tools/LedgerChaos): kept apart from the
// harness so that a test can feed it made-up observations and see each check fail.

/// A trigger the engine accepted: a chat command whose publish the log acknowledged, or a manual run request
/// answered 202. Its run is found by flow and dedup key (`signal_id`, or `manual:<idempotency key>`).
public struct AcceptedTrigger: Sendable, Hashable {
    public var flowID: String
    public var dedupKey: String

    public init(flowID: String, dedupKey: String) {
        self.flowID = flowID
        self.dedupKey = dedupKey
    }
}

/// A run as the log tells it (folded from the log after the quiet period).
public struct RunFacts: Sendable, Equatable {
    public var runID: String
    public var flowID: String
    public var dedupKey: String?
    public var status: String
    public var terminal: Bool
    /// Attempts started (`StepAttemptStarted`, and compensation attempts), by idempotency key.
    public var attemptsByKey: [String: Int]

    public init(
        runID: String, flowID: String, dedupKey: String?, status: String, terminal: Bool,
        attemptsByKey: [String: Int]
    ) {
        self.runID = runID
        self.flowID = flowID
        self.dedupKey = dedupKey
        self.status = status
        self.terminal = terminal
        self.attemptsByKey = attemptsByKey
    }
}

/// What a service outside the engine received under one idempotency key.
public struct EffectCalls: Sendable, Equatable {
    /// `http` (the harness's counting target) or `calendar` (the simulator).
    public var service: String
    public var idempotencyKey: String
    /// Calls received with the key, in all.
    public var calls: Int
    /// How often each command id came, where the service sees command ids (the calendar); empty otherwise.
    public var commandIDs: [String: Int]

    public init(service: String, idempotencyKey: String, calls: Int, commandIDs: [String: Int] = [:]) {
        self.service = service
        self.idempotencyKey = idempotencyKey
        self.calls = calls
        self.commandIDs = commandIDs
    }

    /// The run and the step (or `<step>~compensate`) of a key `<run>/<target>[/g<n>]`.
    var runAndTarget: (run: String, target: String)? {
        let parts = idempotencyKey.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return (String(parts[0]), String(parts[1]))
    }
}

/// Everything the harness observed in one chaos run.
public struct ChaosObservations: Sendable {
    public var triggersSent = 0
    public var accepted: [AcceptedTrigger] = []
    public var runs: [RunFacts] = []
    public var effects: [EffectCalls] = []
    /// Each difference between a worker's read models and the log (a key that differs, a model behind the log).
    public var modelMismatches: [String] = []
    public var kills = 0
    public var natsRestarts = 0
    public var pauses = 0

    public init() {}
}

/// The verdict: the summary line's figures and, for each failed check, a line saying what and where.
public struct ChaosVerdict: Sendable, Equatable {
    public var triggers = 0
    public var accepted = 0
    public var runsTerminal = 0
    /// Accepted triggers with no run, and runs that never finished.
    public var lost = 0
    /// Effects beyond one per run step: a second idempotency key for one step, an effect with no attempt in the
    /// log, a trigger that started more than one run.
    public var doubledEffects = 0
    /// Calls that repeated an attempt (the same command id again, or more calls with a key than attempts in the
    /// log): a re-send after a takeover or a restart, under the same key, so the service applies it once.
    public var resent = 0
    public var modelMismatches = 0
    public var kills = 0
    public var natsRestarts = 0
    public var pauses = 0
    /// What failed, one line each (the first few of each kind).
    public var problems: [String] = []

    /// Nothing lost, nothing doubled, every model equal to the log, and the run did something.
    public var passed: Bool { lost == 0 && doubledEffects == 0 && modelMismatches == 0 && accepted > 0 }

    public var summaryLine: String {
        "chaos: triggers=\(triggers) accepted=\(accepted) runs_terminal=\(runsTerminal) lost=\(lost) doubled_effects=\(doubledEffects) resent=\(resent) model_mismatches=\(modelMismatches) kills=\(kills) nats_restarts=\(natsRestarts) pauses=\(pauses)"
    }
}

/// Judges one chaos run.
public func auditChaos(_ observed: ChaosObservations) -> ChaosVerdict {
    var verdict = ChaosVerdict()
    verdict.triggers = observed.triggersSent
    verdict.kills = observed.kills
    verdict.natsRestarts = observed.natsRestarts
    verdict.pauses = observed.pauses
    var counts: [String: Int] = [:]
    func problem(_ kind: String, _ text: String) {
        counts[kind, default: 0] += 1
        if counts[kind]! <= 10 { verdict.problems.append(text) }
    }

    // Every accepted trigger has exactly one run.
    var runsByTrigger: [AcceptedTrigger: [RunFacts]] = [:]
    for run in observed.runs {
        guard let key = run.dedupKey else { continue }
        runsByTrigger[AcceptedTrigger(flowID: run.flowID, dedupKey: key), default: []].append(run)
    }
    let accepted = Set(observed.accepted)
    verdict.accepted = accepted.count
    for trigger in accepted.sorted(by: { ($0.flowID, $0.dedupKey) < ($1.flowID, $1.dedupKey) }) {
        let runs = runsByTrigger[trigger] ?? []
        if runs.isEmpty {
            verdict.lost += 1
            problem(
                "lost", "lost: trigger \(trigger.flowID)/\(trigger.dedupKey) was accepted but has no run in the log")
        } else if runs.count > 1 {
            verdict.doubledEffects += runs.count - 1
            problem(
                "runs",
                "doubled: trigger \(trigger.flowID)/\(trigger.dedupKey) started \(runs.count) runs: \(runs.map(\.runID).sorted().joined(separator: ", "))"
            )
        }
    }

    // Every run is terminal.
    for run in observed.runs.sorted(by: { $0.runID < $1.runID }) {
        if run.terminal {
            verdict.runsTerminal += 1
        } else {
            verdict.lost += 1
            problem("stuck", "lost: run \(run.runID) (\(run.flowID)) is still \(run.status)")
        }
    }

    // Every effect once per run step; repeats of one attempt are re-sends.
    let runs = Dictionary(observed.runs.map { ($0.runID, $0) }, uniquingKeysWith: { first, _ in first })
    var keysByStep: [String: Set<String>] = [:]
    for effect in observed.effects.sorted(by: { ($0.service, $0.idempotencyKey) < ($1.service, $1.idempotencyKey) })
    where effect.calls > 0 {
        guard let (runID, target) = effect.runAndTarget else {
            verdict.doubledEffects += 1
            problem(
                "unknown", "doubled: \(effect.service) received key \(effect.idempotencyKey), which names no run step")
            continue
        }
        keysByStep["\(effect.service) \(runID)/\(target)", default: []].insert(effect.idempotencyKey)
        let attempts = runs[runID]?.attemptsByKey[effect.idempotencyKey] ?? 0
        if attempts == 0 {
            verdict.doubledEffects += 1
            problem(
                "unrecorded",
                "doubled: \(effect.service) received \(effect.calls) call(s) with key \(effect.idempotencyKey), but the log records no attempt under it\(runs[runID] == nil ? " (no such run)" : "")"
            )
            continue
        }
        if effect.commandIDs.isEmpty {
            verdict.resent += max(0, effect.calls - attempts)
        } else {
            verdict.resent += effect.commandIDs.values.reduce(0) { $0 + max(0, $1 - 1) }
        }
    }
    for (step, keys) in keysByStep.sorted(by: { $0.key < $1.key }) where keys.count > 1 {
        verdict.doubledEffects += keys.count - 1
        problem("keys", "doubled: \(step) was done under \(keys.count) keys: \(keys.sorted().joined(separator: ", "))")
    }

    verdict.modelMismatches = observed.modelMismatches.count
    for mismatch in observed.modelMismatches { problem("models", "model mismatch: \(mismatch)") }
    if verdict.accepted == 0 { verdict.problems.append("no trigger was accepted: the run proves nothing") }
    for (kind, count) in counts.sorted(by: { $0.key < $1.key }) where count > 10 {
        verdict.problems.append("(\(count - 10) more of kind \(kind))")
    }
    return verdict
}
