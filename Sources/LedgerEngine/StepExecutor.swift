import Foundation
import LedgerCore
import LedgerNATS
import Logging
import Synchronization

/// Carries out step attempts: commands to other services, requests, effects and timers.
/// Answers that come back later (calendar events) reach the run through the engine's inbound consumer.
final class StepExecutor: Sendable {
    let ledger: Ledger
    let registry: ActionRegistry
    let logger: Logger
    let discoveryCacheTTL: Duration
    private let discoveryCache: ResultCache
    /// Counts cache hits and misses (`ledgerflow_discovery_cache_total`).
    let metrics: EngineMetrics?
    /// The engine's event subjects: `emit` may not publish there (a flow would trigger itself) unless allowed.
    let eventSubjects: [String]

    let breakers: CircuitBreakers<ContinuousClock>
    /// Where `http.request` and `emit` may send beyond the defaults.
    let outbound: OutboundPolicy
    let http: HTTPAction
    /// Where `{{secrets.NAME}}` values come from.
    let secrets: SecretStore

    init(
        ledger: Ledger, registry: ActionRegistry, discoveryCacheTTL: Duration, discoveryCacheEntries: Int = 1_000,
        breakers: CircuitBreakers<ContinuousClock>, outbound: OutboundPolicy = OutboundPolicy(),
        secrets: SecretStore = SecretStore(), metrics: EngineMetrics? = nil, eventSubjects: [String] = [],
        logger: Logger
    ) {
        self.metrics = metrics
        self.eventSubjects = eventSubjects
        self.ledger = ledger
        self.secrets = secrets
        self.breakers = breakers
        self.outbound = outbound
        self.http = HTTPAction(policy: outbound, breakers: breakers, logger: logger)
        self.registry = registry
        self.discoveryCacheTTL = discoveryCacheTTL
        self.discoveryCache = ResultCache(ttl: discoveryCacheTTL, entryLimit: discoveryCacheEntries)
        self.logger = logger
    }

    /// Carries out `execution` with its `{{secrets.NAME}}` resolved, and redacts whatever of their values its
    /// answer (or error) echoes before it is recorded. A secret that is not set fails the attempt for good.
    func withSecrets(
        _ execution: StepExecution, _ perform: (StepExecution) async throws -> StepResult
    ) async throws -> StepResult {
        var resolved = execution
        var used: [String] = []
        do {
            // Only the headers whose definition names a secret; run data anywhere else is sent as it is.
            if case .object(var headers)? = execution.request["headers"], case .object(var request) = execution.request
            {
                for name in execution.secretHeaders {
                    guard let value = headers[name] else { continue }
                    let (filled, found) = try SecretReferences.resolve(value) { secrets.value($0) }
                    headers[name] = filled
                    used += found
                }
                request["headers"] = .object(headers)
                resolved.request = .object(request)
            }
        } catch {
            throw StepError(
                kind: .badRequest,
                message:
                    "secret \(error.name) is not set: give it in the --secrets file or as \(SecretStore.environmentPrefix)\(error.name.uppercased())",
                retryable: false)
        }
        if used.isEmpty { return try await perform(execution) }
        do {
            switch try await perform(resolved) {
            case .success(let output): return .success(SecretReferences.redact(output, used))
            case .failure(var error):
                error.message = SecretReferences.redact(error.message, used)
                return .failure(error)
            }
        } catch var error as StepError {
            error.message = SecretReferences.redact(error.message, used)
            throw error
        }
    }

    /// Closes outbound connections (when the engine stops).
    func shutdown() async {
        await http.shutdown()
    }

    /// Starts the attempt; `report` is called with its result when the engine itself produces one.
    func execute(_ execution: StepExecution, startedAt: Date, report: @escaping @Sendable (StepResult) -> Void) async {
        guard let spec = registry[execution.action] else {
            report(
                .failure(
                    StepError(
                        kind: .unknownAction, message: "action \(execution.action) is not in the registry",
                        retryable: false)))
            return
        }
        do {
            switch spec.kind {
            case .command(let subject, let type):
                try await sendCommand(execution, subject: subject, type: type)
            case .request(let subject):
                report(await request(execution, subject: subject))
            case .effect:
                report(try await effect(execution))
            case .timer:
                let seconds = try Self.delaySeconds(execution.request)
                let due = startedAt.addingTimeInterval(seconds)
                let wait = due.timeIntervalSinceNow
                if wait > 0 { try await Task.sleep(for: .milliseconds(wait.clampedMilliseconds)) }
                report(.success(["waited_ms": .number((seconds * 1000).rounded())]))
            case .local:
                report(.success(execution.request["value"] ?? .null))
            }
        } catch is CancellationError {
            return
        } catch let error as StepError {
            report(.failure(error))
        } catch {
            report(.failure(StepError(kind: .unavailable, message: "\(error)", retryable: true)))
        }
    }

    /// The command's `data`: the rendered `with` plus `command_id`, `idempotency_key` and `on_behalf_of`.
    func commandData(_ execution: StepExecution) -> JSONValue {
        var data = execution.request.objectValue ?? [:]
        data["command_id"] = .string(execution.commandID)
        data["idempotency_key"] = .string(execution.idempotencyKey)
        data["on_behalf_of"] = execution.onBehalfOf
        return .object(data)
    }

    func sendCommand(_ execution: StepExecution, subject: String, type: String) async throws {
        let event = CloudEvent(
            id: execution.commandID, type: type, runid: execution.runID, stepid: execution.target.wireID,
            correlationid: execution.runID, traceparent: execution.traceparent, data: commandData(execution))
        // Its id is the command id: a command re-sent after a restart is stored once.
        try await ledger.send(event, on: subject, retry: .once)
    }

    /// A `discovery.search`: answered from the cache when the same query (normalised: case, surrounding and repeated
    /// spaces) was answered for at least as many results within the cache's time, else by the service (request/reply
    /// with the step's deadline). The recorded output says which (`cached`); only the top N results are kept.
    func request(_ execution: StepExecution, subject: String) async -> StepResult {
        let search: DiscoveryQuery
        switch DiscoveryQuery.read(execution.request) {
        case .success(let value): search = value
        case .failure(let error): return .failure(error)
        }
        if case .object(let hit)? = discoveryCache.get(search.key), let cachedTopN = hit["top_n"]?.numberValue,
            Int(cachedTopN) >= search.topN, case .object(var answer)? = hit["answer"]
        {
            metrics?.discoveryLookup(hit: true)
            answer["results"] = (answer["results"]?.arrayValue).map { .array(Array($0.prefix(search.topN))) }
            answer["cached"] = true
            return .success(.object(answer))
        }
        metrics?.discoveryLookup(hit: false)
        // The request as SPEC §3 has it: `{query, top_n}` (with the step's other fields), top_n always given.
        var request = execution.request.objectValue ?? [:]
        request["top_n"] = .number(Double(search.topN))
        let event = CloudEvent(
            id: execution.commandID, type: "DiscoverySearch", runid: execution.runID, stepid: execution.target.wireID,
            correlationid: execution.runID, traceparent: execution.traceparent, data: JSONValue.object(request))
        do {
            let timeout = max(0.05, execution.deadline.timeIntervalSinceNow)
            let reply = try await ledger.request(
                event, on: subject, timeout: .milliseconds(timeout.clampedMilliseconds))
            try Self.checkSize(reply.count, of: "the reply on \(subject)")
            let answer = try JSONTree.decode(CloudEvent<JSONValue>.self, from: reply, maxDepth: Limits.stepOutputDepth)
            if let problem = answer.data["error"] {
                let detail = problem["detail"]?.stringValue ?? problem["title"]?.stringValue ?? problem.compactJSON
                return .failure(
                    StepError(
                        kind: .refused, message: "\(subject) refused the request: \(detail)",
                        retryable: (problem["status"]?.numberValue ?? 500) >= 500))
            }
            guard case .object(var data) = answer.data, case .array(let results)? = data["results"] else {
                return .failure(
                    StepError(
                        kind: .badReply,
                        message: "\(subject) answered without a results array: \(answer.data.compactJSON.prefix(80))",
                        retryable: true))
            }
            data["results"] = .array(Array(results.prefix(search.topN)))
            discoveryCache.set(
                search.key, ["top_n": .number(Double(search.topN)), "answer": .object(data)], size: reply.count)
            data["cached"] = false
            return .success(.object(data))
        } catch let error as StepError {
            return .failure(error)
        } catch let error as NATSError {
            return .failure(
                StepError(
                    kind: error.isTimeout ? .timeout : .unavailable, message: "\(subject): \(error.message)",
                    retryable: true))
        } catch {
            return .failure(
                StepError(
                    kind: .badReply, message: "\(subject) answered with something that is not a CloudEvent: \(error)",
                    retryable: true))
        }
    }

    func effect(_ execution: StepExecution) async throws -> StepResult {
        switch execution.action {
        case "notify":
            let event = CloudEvent(
                id: execution.commandID, type: EventType.notificationRequested, runid: execution.runID,
                stepid: execution.target.wireID,
                correlationid: execution.runID, traceparent: execution.traceparent, data: commandData(execution))
            try await ledger.send(event, on: Subjects.notificationSend, retry: .once)
            return .success(["notification_id": .string(execution.commandID), "status": "queued"])
        case "emit":
            guard let subject = execution.request["subject"]?.stringValue,
                let type = execution.request["type"]?.stringValue
            else {
                throw StepError(kind: .badRequest, message: "emit needs with.subject and with.type", retryable: false)
            }
            // The definition's subject was checked at registration; the rendered one is checked again here.
            if let why = EmitSubjectPolicy.refusal(
                subject, allowed: outbound.emitAllow, eventSubjects: eventSubjects)
            {
                throw StepError(kind: .forbiddenSubject, message: "emit refused: \(why)", retryable: false)
            }
            guard !type.isEmpty, type.utf8.count <= Limits.identifierBytes,
                !type.unicodeScalars.contains(where: {
                    $0.properties.isWhitespace || $0.properties.generalCategory == .control
                })
            else {
                throw StepError(
                    kind: .badRequest,
                    message:
                        "emit's with.type must be a CloudEvents type of 1 to \(Limits.identifierBytes) visible characters, e.g. OrderShipped",
                    retryable: false)
            }
            let event = CloudEvent(
                id: execution.commandID, type: type, runid: execution.runID, stepid: execution.target.wireID,
                correlationid: execution.runID, traceparent: execution.traceparent,
                data: execution.request["data"] ?? .null)
            try await ledger.send(event, on: subject, retry: .once)
            return .success(["subject": .string(subject), "event_id": .string(execution.commandID)])
        case "http.request":
            return try await withSecrets(execution) { try await http.perform($0) }
        default:
            throw StepError(kind: .unknownAction, message: "no executor for \(execution.action)", retryable: false)
        }
    }
}

extension StepExecutor {
    /// How long a `delay` step waits: `with.duration` (`500ms`, `30s`, `15m`, `1h`, `1d`), `with.seconds` or
    /// `with.ms`, as rendered. Anything else (a template that rendered to `infs`, text where a number belongs) fails
    /// the step saying what was wrong; it never waits some other time.
    static func delaySeconds(_ request: JSONValue) throws -> Double {
        func refuse(_ message: String) -> StepError { StepError(kind: .badRequest, message: message, retryable: false) }
        let seconds: Double
        if let duration = request["duration"], duration != .null {
            guard case .string(let text) = duration else {
                throw refuse("delay's with.duration must be text such as 30s, not \(duration.compactJSON.prefix(40))")
            }
            switch DurationText.parse(text) {
            case .success(let value): seconds = value
            case .failure(let problem): throw refuse("delay's with.duration: \(problem.message)")
            }
        } else if let value = request["seconds"], value != .null {
            guard case .number(let n) = value else { throw refuse("delay's with.seconds must be a number") }
            seconds = n
        } else if let value = request["ms"], value != .null {
            guard case .number(let n) = value else { throw refuse("delay's with.ms must be a number") }
            seconds = n / 1000
        } else {
            throw refuse("delay needs with.duration (such as 30s), with.seconds or with.ms")
        }
        guard seconds.isFinite, seconds >= 0, seconds <= Limits.runTimeoutSeconds else {
            throw refuse("delay must be between 0 and \(Int(Limits.runTimeoutSeconds)) seconds")
        }
        return seconds
    }

    /// A step's output is recorded in its event, and an event must fit in the stream's message size (1 MiB).
    static let maxOutputBytes = Limits.stepOutputBytes

    static func checkSize(_ bytes: Int, of what: String) throws {
        if bytes > maxOutputBytes {
            throw StepError(
                kind: .outputTooLarge,
                message:
                    "\(what) is \(bytes) bytes; a step's output is recorded in the log and may be at most \(maxOutputBytes) bytes",
                retryable: false)
        }
    }
}

/// The query of a `discovery.search` step, read from its rendered `with`.
struct DiscoveryQuery: Equatable {
    static let maxQueryBytes = 1_024
    static let maxTopN = 100
    static let defaultTopN = 3

    /// The cache key: the query lower-cased, trimmed, its runs of whitespace as one space; then the step's other
    /// fields (filters, language...) as canonical JSON, so searches that differ in them never share answers.
    let key: String
    let topN: Int

    static func normalise(_ text: String) -> String {
        text.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    static func read(_ request: JSONValue) -> Result<DiscoveryQuery, StepError> {
        func refuse(_ message: String) -> Result<DiscoveryQuery, StepError> {
            .failure(StepError(kind: .badRequest, message: message, retryable: false))
        }
        guard case .string(let text)? = request["query"] else {
            return refuse("discovery.search needs with.query as text, e.g. \"{{trigger.entities.title}}\"")
        }
        let key = normalise(text)
        if key.isEmpty { return refuse("discovery.search's with.query is empty (after trimming spaces)") }
        if text.utf8.count > maxQueryBytes {
            return refuse("discovery.search's with.query is \(text.utf8.count) bytes; at most \(maxQueryBytes)")
        }
        var topN = defaultTopN
        if let value = request["top_n"], value != .null {
            guard let n = value.numberValue?.exactInt(in: 1...maxTopN) else {
                return refuse(
                    "discovery.search's with.top_n must be a whole number from 1 to \(maxTopN), got \(value.compactJSON.prefix(40))"
                )
            }
            topN = n
        }
        var others = request.objectValue ?? [:]
        others["query"] = nil
        others["top_n"] = nil
        let fullKey = others.isEmpty ? key : key + "\u{1}" + JSONValue.object(others).compactJSON
        return .success(DiscoveryQuery(key: fullKey, topN: topN))
    }
}
