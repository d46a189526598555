import Foundation
import LedgerCore
import LedgerNATS
import LedgerTestSupport
import Synchronization
import Testing

@testable import LedgerEngine

extension Integration {
    /// Events of one run appended together (issue 20): one atomic batch, one acknowledgement, all stored or none.
    @Suite struct AtomicBatchTests {
        /// Atomic batches are off unless asked for (`serve --atomic-batches`).
        static var batches: LedgerConfiguration {
            var configuration = LedgerConfiguration()
            configuration.atomicBatches = true
            return configuration
        }

        static func started(_ run: String) -> LedgerEvent.Body {
            .runStarted(
                FlowRunStarted(
                    run_id: run, flow_id: "batch-flow", flow_version: 1, definition_hash: "h", mode: .live,
                    trigger: RunTrigger(kind: .manual), actor: "t", input: [:], step_ids: ["a", "b"],
                    dedup_key: nil, message_id: nil, channel: nil))
        }

        static func succeeded(_ step: String) -> LedgerEvent.Body {
            .stepAttemptSucceeded(
                StepAttemptSucceeded(
                    step_id: step, attempt: 1, output: ["step": .string(step)], started_at: "s", finished_at: "f"))
        }

        static func append(
            _ ledger: Ledger, _ bodies: [LedgerEvent.Body], run: String, expected: UInt64, previous: ChainLink? = nil
        ) async throws -> [AppendedEvent] {
            try await ledger.appendAtomically(
                bodies.map { ($0, EventContext(correlationID: run)) }, run: run, flowID: "batch-flow", flowVersion: 1,
                expectedLastSequence: expected, previous: previous, time: Timestamp.now())
        }

        @Test func aBatchIsStoredTogetherChainedAndReadBackAsAppended() async throws {
            try await withTestStack(ledger: Self.batches) { stack in
                let ledger = stack.ledger
                #expect(ledger.atomicBatches, "nats-server 2.15 takes atomic batches: the stream is set up for them")
                let attached = try await Ledger.open(url: TestServer.url, logger: testLogger)
                #expect(!attached.atomicBatches, "off unless asked for")
                attached.close()
                let run = "batch-\(EventID.make())"
                let first = try await Self.append(
                    ledger, [Self.started(run), Self.succeeded("a")], run: run, expected: 0)
                #expect(first.count == 2)
                #expect(first[1].sequence == first[0].sequence + 1, "stored one after the other")
                let second = try await Self.append(
                    ledger, [Self.succeeded("b"), .runSucceeded(FlowRunSucceeded(output: ["ok": true]))], run: run,
                    expected: first[1].sequence, previous: first[1].link)
                let stored = try await ledger.read(subject: Subjects.run(run))
                #expect(stored.map(\.sequence) == (first + second).map(\.sequence))
                for (message, appended) in zip(stored, first + second) {
                    let event = try LedgerEvent(bytes: message.payload)
                    #expect(event.body == appended.event.body)
                    #expect(event.id == appended.event.id)
                    #expect(ChainLink(sequence: message.sequence, payload: message.payload) == appended.link)
                }
                let verified = try await ledger.verify(subject: Subjects.run(run))
                #expect(verified.isClean && verified.linked == 3, "\(verified.summary)")
                let folded = try #require(try await stack.engine.foldRunFromLog(run))
                #expect(folded.state.status == .succeeded)
                #expect(folded.state.last_sequence == second[1].sequence)
            }
        }

        /// A batch whose expected sequence is stale (another writer moved the run on) is refused as a conflict, and
        /// none of its events is stored: not the first, not the ones after it.
        @Test func aStaleBatchIsRefusedWhole() async throws {
            try await withTestStack(ledger: Self.batches) { stack in
                let ledger = stack.ledger
                let run = "stale-\(EventID.make())"
                let first = try await Self.append(
                    ledger, [Self.started(run), Self.succeeded("a")], run: run, expected: 0)
                for expected in [first[0].sequence, 0, first[1].sequence + 1000] {
                    do {
                        // A link at the expected sequence, so the batch reaches the server (which refuses it).
                        _ = try await Self.append(
                            ledger, [Self.succeeded("b"), Self.succeeded("c"), Self.succeeded("d")], run: run,
                            expected: expected, previous: ChainLink(sequence: expected, hash: "sha256:stale"))
                        Issue.record("a batch expecting \(expected) was stored")
                    } catch let error as NATSError {
                        #expect(error.isWrongLastSequence, "\(error)")
                    }
                }
                #expect(try await ledger.read(subject: Subjects.run(run)).count == 2)
                let tooLarge = LedgerEvent.Body.stepAttemptSucceeded(
                    StepAttemptSucceeded(
                        step_id: "big", attempt: 1, output: .string(String(repeating: "x", count: 2 << 20)),
                        started_at: "s", finished_at: "f"))
                do {
                    _ = try await Self.append(
                        ledger, [Self.succeeded("b"), tooLarge], run: run, expected: first[1].sequence,
                        previous: first[1].link)
                    Issue.record("a batch with an event larger than the log takes was sent")
                } catch let error as NATSError {
                    #expect(error.jetStreamError == .messageTooLarge, "\(error)")
                }
                #expect(try await ledger.read(subject: Subjects.run(run)).count == 2)
            }
        }

        /// Registers and activates a flow of six transform steps, one after another (intent `chain`).
        static func activateChainOfTransforms(_ stack: TestStack) async throws {
            var steps: [JSONValue] = []
            for i in 0..<6 {
                var step: [String: JSONValue] = [
                    "id": .string("t\(i)"), "action": "transform",
                    "with": ["value": ["n": .number(Double(i)), "title": "{{trigger.entities.title}}"]],
                ]
                if i > 0 { step["depends_on"] = [.string("t\(i - 1)")] }
                steps.append(.object(step))
            }
            let flow: JSONValue = [
                "id": "chain-of-transforms", "trigger": ["event": "AssistantCommandIssued", "intent": "chain"],
                "steps": .array(steps), "output": ["text": "{{steps.t5.output.title}} {{steps.t5.output.n}}"],
            ]
            let (created, body) = try await stack.http("POST", "/automation/flows", flow)
            try #require(created == 201, "\(body.compactJSON)")
            #expect(try await stack.http("POST", "/automation/flows/chain-of-transforms/activate").0 == 200)
        }

        /// A chain of transform steps is decided ahead and appended in one batch; the run, its log and a rebuild are
        /// what appending one event at a time gives.
        @Test func aRunOfTransformStepsAppendsThemTogether() async throws {
            try await withTestStack(ledger: Self.batches) { stack in
                try await Self.activateChainOfTransforms(stack)
                for i in 0..<3 { try stack.publishCommand(id: "chain-\(i)", title: "T\(i)", intent: "chain") }
                let runs = try await stack.waitForRuns(3)
                for run in runs {
                    #expect(run.output?["text"]?.stringValue?.hasSuffix(" 5") == true)
                    #expect(run.steps.allSatisfy { $0.status == .succeeded })
                    let messages = try await stack.ledger.read(subject: Subjects.run(run.run_id))
                    let events = try messages.map { try LedgerEvent(bytes: $0.payload) }
                    let steps = zip(messages, events).filter { $0.1.type == EventType.stepAttemptSucceeded }
                    #expect(steps.count == 6)
                    // Appended together: one after another in the stream, one time.
                    #expect(
                        steps.map(\.0.sequence) == Array(steps[0].0.sequence..<(steps[0].0.sequence + 6)),
                        "\(steps.map(\.0.sequence))")
                    #expect(Set(steps.map(\.1.time)).count == 1)
                    let verified = try await stack.ledger.verify(subject: Subjects.run(run.run_id))
                    #expect(verified.isClean, "\(verified.summary)")
                }
                try await stack.expectRebuildEqualsLive()
            }
        }

        /// A batch stored whose acknowledgement is lost: the run goes one event at a time, finds its batch in the
        /// log (a stale expected sequence), reads the run again from there and finishes, each step stored once.
        @Test func aBatchWhoseAcknowledgementIsLostIsFoundInTheLog() async throws {
            try await withTestStack(ledger: Self.batches) { stack in
                try await Self.activateChainOfTransforms(stack)
                let lost = Atomic<Bool>(false)
                stack.ledger.failpoints.afterAppend = { message in
                    guard message.subject.hasPrefix(Subjects.runPrefix),
                        String(decoding: message.payload, as: UTF8.self).contains(#""step_id":"t0""#),
                        lost.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
                    else { return }
                    throw NATSError(status: 7, message: "injected: the batch's acknowledgement was lost")
                }
                defer { stack.ledger.failpoints.afterAppend = nil }
                try stack.publishCommand(id: "chain-lost", title: "L", intent: "chain")
                let run = try #require(try await stack.waitForRuns(1).first)
                let wasLost = lost.load(ordering: .relaxed)
                #expect(wasLost)
                #expect(run.status == .succeeded)
                #expect(run.output?["text"]?.stringValue == "L 5")
                let messages = try await stack.ledger.read(subject: Subjects.run(run.run_id))
                let events = try messages.map { try LedgerEvent(bytes: $0.payload) }
                let steps = events.filter { $0.type == EventType.stepAttemptSucceeded }.compactMap(\.body.stepID)
                #expect(steps == (0..<6).map { "t\($0)" })
                let verified = try await stack.ledger.verify(subject: Subjects.run(run.run_id))
                #expect(verified.isClean, "\(verified.summary)")
                try await stack.expectRebuildEqualsLive()
            }
        }

        /// A run of `definition` just started, and the chain its first decision starts.
        static func firstChain(
            of definition: FlowDefinition
        ) throws -> (RunDecider, RunState, Date, (events: [LedgerEvent.Body], time: String)) {
            let decider = RunDecider(definition: definition, registry: .builtIn)
            let start = LedgerEvent(id: "e", type: EventType.runStarted, time: "t", runid: "r", body: Self.started("r"))
            var state = try #require(RunState.evolve(nil, start, sequence: 1))
            state.steps = definition.steps.map { StepRecord(step_id: $0.id) }
            let now = Date()
            let chain = try #require(Engine.chain(decider.decide(state, .advance, now: now), state, decider, now: now))
            return (decider, state, now, chain)
        }

        /// Deciding ahead decides as one at a time does: the chain stops before a decision that does more than
        /// append, hands that decision over whole, and never exceeds its bound.
        @Test func aChainStopsWhereADecisionDoesMoreThanAppend() throws {
            let definition = try JSONTree.decode(
                FlowDefinition.self,
                from: Array(
                    """
                    {"id":"f","trigger":{"event":"AssistantCommandIssued","intent":"x"},"steps":[
                    {"id":"a","action":"transform","with":{"value":1}},
                    {"id":"b","action":"transform","depends_on":["a"],"with":{"value":2}},
                    {"id":"c","action":"calendar.schedule_event","depends_on":["b"],"with":{"title":"t","start":"s"}}],
                    "output":{"text":"ok"}}
                    """.utf8))
            let (decider, state, now, chain) = try Self.firstChain(of: definition)
            // The calendar step's decision appends its start, then executes it: the chain ends before it, and it is
            // decided again once the chain is stored (an effect never starts for a batch whose fate is unknown).
            #expect(chain.events.map(\.stepID) == ["a", "b"])
            // One at a time, the decisions append the same events.
            var sequential: [LedgerEvent.Body] = []
            var folded = state
            for _ in 0..<2 {
                guard case .append(let body)? = decider.decide(folded, .advance, now: now).first else { break }
                sequential.append(body)
                folded = RunState.evolve(
                    folded, LedgerEvent(id: "x", type: body.type, time: chain.time, runid: "r", body: body),
                    sequence: folded.last_sequence + 1)!
            }
            #expect(sequential == chain.events)
            let after = decider.decide(folded, .advance, now: now)
            #expect(after.contains { if case .execute = $0 { true } else { false } }, "\(after)")
        }

        /// A run of more transform steps than a chain holds is appended in chains of `Engine.maxChain` events, each
        /// what the decisions one at a time would append.
        @Test func aChainHoldsAtMostItsBound() throws {
            let count = Engine.maxChain + 10
            let steps = (0..<count).map { i in
                #"{"id":"s\#(i)","action":"transform","with":{"value":\#(i)}\#(i == 0 ? "" : #","depends_on":["s\#(i - 1)"]"#)}"#
            }
            let definition = try JSONTree.decode(
                FlowDefinition.self,
                from: Array(
                    #"{"id":"f","trigger":{"event":"AssistantCommandIssued","intent":"x"},"steps":[\#(steps.joined(separator: ","))],"output":{"text":"ok"}}"#
                        .utf8))
            let (decider, state, now, chain) = try Self.firstChain(of: definition)
            #expect(chain.events.count == Engine.maxChain)
            #expect(chain.events.map(\.stepID) == (0..<Engine.maxChain).map { "s\($0)" })
            // The next chain starts where this one stopped, from the state it leads to.
            var folded = state
            for (offset, body) in chain.events.enumerated() {
                folded = try #require(
                    RunState.evolve(
                        folded, LedgerEvent(id: "x", type: body.type, time: chain.time, runid: "r", body: body),
                        sequence: state.last_sequence + UInt64(offset) + 1))
            }
            let rest = try #require(
                Engine.chain(decider.decide(folded, .advance, now: now), folded, decider, now: now))
            #expect(rest.events.prefix(10).map(\.stepID) == (Engine.maxChain..<count).map { "s\($0)" })
            #expect(rest.events.count <= Engine.maxChain)
        }

        /// Without `--atomic-batches` the stream is left as it was: a stream with `allow_atomic` needs a server of
        /// 2.12 or later, and an older one (a downgrade, a node of a cluster) takes it offline.
        @Test func withoutBatchesTheStreamIsLeftWithoutAllowAtomic() async throws {
            try await withTestStack { stack in
                #expect(!stack.ledger.atomicBatches)
                let info = try await JetStreamAPI(connection: stack.outside).streamInfo(stack.ledger.stream)
                #expect(info.config.allow_atomic != true)
            }
        }
    }
}
