import LedgerCore
import Logging
import Tracing

/// One span of a run's trace as the engine holds it: its W3C context (what the events it covers and the commands it
/// sends carry as `traceparent`: this span's id as the parent) and, when spans are exported, the tracer's span.
struct TraceSpan: Sendable {
    /// The trace id and this span's id (as the parent id), with the trace's flags.
    let context: TraceParent
    /// The recorded span; nil when no tracer exports spans (then the ids are made here and nothing is recorded).
    let span: (any Span)?
    /// `context` as written, made once: every event of the span carries it.
    let header: String

    init(context: TraceParent, span: (any Span)?) {
        self.context = context
        self.span = span
        self.header = context.description
    }

    /// Ends the span; a failure marks it as an error with what went wrong.
    func end(failure: String? = nil) {
        guard let span else { return }
        if let failure { span.setStatus(SpanStatus(code: .error, message: failure)) }
        span.end()
    }

    func set(_ key: String, _ value: String) {
        span?.attributes[key] = value
    }
}

/// Starts the spans of runs: with a tracer (OTLP export configured), recorded spans whose ids the tracer assigns;
/// without one, only W3C contexts with fresh span ids, so commands and events still carry the trace and a parent
/// id per step attempt, at the cost of a random number and a string.
struct RunTracing: Sendable {
    let tracer: (any Tracer)?

    /// A span named `name`, child of `parent` (a span of another service, or of this run), or the root of a new
    /// trace when there is no parent.
    func start(_ name: String, parent: TraceParent?, attributes: [String: String]) -> TraceSpan {
        guard let tracer else {
            return TraceSpan(context: parent?.newChild() ?? .newTrace(), span: nil)
        }
        var context = InstrumentationContext.topLevel
        if let parent {
            tracer.extract(
                ["traceparent": parent.description], into: &context, using: TraceparentCarrier())
        }
        let span = tracer.startSpan(name, context: context, ofKind: .internal)
        for (key, value) in attributes { span.attributes[key] = value }
        var carrier: [String: String] = [:]
        tracer.inject(span.context, into: &carrier, using: TraceparentCarrier())
        // A tracer that samples this span out may give it no context to pass on: the trace still travels.
        let own = carrier["traceparent"].flatMap { try? TraceParent.parse($0).get() }
        return TraceSpan(context: own ?? parent?.newChild() ?? .newTrace(), span: span)
    }
}

/// An attempt of a step or of its compensation.
struct AttemptKey: Hashable, Sendable {
    let target: AttemptTarget
    let attempt: Int
}

/// Reads and writes the `traceparent` of a `[String: String]`, for the tracer's propagation.
struct TraceparentCarrier: Extractor, Injector {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

extension Engine {
    /// The trace an inbound message continues: its `traceparent` when it is a valid one; nil (a new trace) when it has
    /// none or one that cannot be read, which is logged and otherwise ignored (the message is handled as usual).
    func inboundTrace(_ traceparent: String?, from source: String, sequence: UInt64? = nil) -> TraceParent? {
        switch TraceParent.inbound(traceparent) {
        case nil: return nil
        case .success(let parent)?: return parent
        case .failure(let problem)?:
            var metadata: Logger.Metadata = [
                "ledger.traceparent": "\(traceparent.map { String($0.prefix(64)) } ?? "")",
                LogKey.error: "\(problem.reason)", "ledger.source": "\(source)",
            ]
            if let sequence { metadata[LogKey.sequence] = "\(sequence)" }
            logger.warning(
                "ignoring a malformed traceparent (W3C: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>); the run starts a new trace",
                metadata: metadata)
            return nil
        }
    }

    /// The span of this worker's part of a run (a "run segment"): started when a worker starts driving the run
    /// (it started it, took it over, or resumed it after a restart) and ended when it stops driving it. Every
    /// segment of a run is in the run's trace: the first is the child of the inbound message's span (or the root of
    /// a new trace), the later ones children of the run's stored parent, so a run that changed workers is one trace.
    func startSegment(of state: RunState, resumed: Bool) -> TraceSpan {
        startSegment(
            runID: state.run_id, flowID: state.flow_id, flowVersion: state.flow_version,
            parent: state.traceparent.flatMap { try? TraceParent.parse($0).get() }, resumed: resumed)
    }

    func startSegment(
        runID: String, flowID: String, flowVersion: Int, parent: TraceParent?, resumed: Bool
    )
        -> TraceSpan
    {
        tracing.start(
            "run \(flowID)", parent: parent,
            attributes: [
                LogKey.runID: runID, LogKey.flowID: flowID, LogKey.flowVersion: "\(flowVersion)",
                "ledger.run.segment": resumed ? "resumed" : "started", "ledger.worker": workerID,
            ])
    }
}

extension Engine.RunLoop {
    /// The span of the attempt, started (a child of the segment) if this worker has none yet.
    mutating func attemptSpan(_ target: AttemptTarget, attempt: Int, tracing: RunTracing) -> TraceSpan {
        let key = Self.attemptKey(target, attempt)
        if let span = attempts[key] { return span }
        let name: String
        switch target {
        case .step(let id): name = "step \(id)"
        case .compensation(of: let id): name = "compensate \(id)"
        }
        let span = tracing.start(
            name, parent: segment.context,
            attributes: [
                LogKey.runID: state.run_id, LogKey.flowID: state.flow_id, LogKey.stepID: target.wireID,
                LogKey.attempt: "\(attempt)",
            ])
        attempts[key] = span
        return span
    }

    static func attemptKey(_ target: AttemptTarget, _ attempt: Int) -> AttemptKey {
        AttemptKey(target: target, attempt: attempt)
    }

    /// The `traceparent` of an event of the run: the attempt's span for an attempt's events (starting it with the
    /// attempt's first event), the segment's for the run's own.
    mutating func traceparent(for body: LedgerEvent.Body, tracing: RunTracing) -> String {
        switch body {
        case .stepAttemptStarted(let e):
            return attemptSpan(.step(e.step_id), attempt: e.attempt, tracing: tracing).header
        case .compensationStarted(let e):
            return attemptSpan(.compensation(of: e.step_id), attempt: e.attempt, tracing: tracing).header
        case .stepAttemptSucceeded(let e):
            return attempts[Self.attemptKey(.step(e.step_id), e.attempt)]?.header ?? segment.header
        case .stepAttemptFailed(let e):
            return attempts[Self.attemptKey(.step(e.step_id), e.attempt)]?.header ?? segment.header
        case .compensationSucceeded(let e):
            return attempts[Self.attemptKey(.compensation(of: e.step_id), e.attempt)]?.header ?? segment.header
        case .compensationFailed(let e):
            return attempts[Self.attemptKey(.compensation(of: e.step_id), e.attempt)]?.header ?? segment.header
        default:
            return segment.header
        }
    }

    /// Ends the attempt's span once its outcome is in the log.
    mutating func recorded(_ body: LedgerEvent.Body) {
        switch body {
        case .stepAttemptSucceeded(let e):
            attempts.removeValue(forKey: Self.attemptKey(.step(e.step_id), e.attempt))?.end()
        case .compensationSucceeded(let e):
            attempts.removeValue(forKey: Self.attemptKey(.compensation(of: e.step_id), e.attempt))?.end()
        case .stepAttemptFailed(let e):
            attempts.removeValue(forKey: Self.attemptKey(.step(e.step_id), e.attempt))?.end(failure: e.error.message)
        case .compensationFailed(let e):
            attempts.removeValue(forKey: Self.attemptKey(.compensation(of: e.step_id), e.attempt))?
                .end(failure: e.error.message)
        default:
            break
        }
    }

    /// Ends every span this worker holds for the run: its attempts still in flight (their outcome, if any, is
    /// recorded by whoever drives the run next) and the segment, with the run's status.
    mutating func endSpans() {
        for span in attempts.values {
            span.set("ledger.step.outcome", "not seen by this worker")
            span.end()
        }
        attempts.removeAll()
        segment.set("ledger.run.status", state.status.rawValue)
        if handedOver { segment.set("ledger.run.handed_over", "true") }
        segment.end(failure: state.status == .failed ? state.error?.message ?? "the run failed" : nil)
    }
}
