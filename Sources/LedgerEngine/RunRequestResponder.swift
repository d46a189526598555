import Foundation
import LedgerCore
import LedgerNATS
import LedgerProjections
import Logging

/// The responder for `automation.flow.run`: manual runs requested over NATS (request/reply).
extension Engine {
    func answerRunRequests(_ requests: IncomingRequests) async {
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await message in requests {
                // Bounded: past the limit, the next request waits for one to finish (NATS buffers the rest).
                if running >= Limits.requestConcurrency {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await self.answerRunRequest(message) }
            }
        }
    }

    /// Starts a run for a `FlowRunRequested` and answers `{run_id}` or `{error: problem}`; the request and the reply
    /// are recorded on `ledger.request.flow_run` (the subject itself is not a stream subject).
    func answerRunRequest(_ message: IncomingRequest) async {
        var answer: JSONValue
        var requestEvent: CloudEvent<JSONValue>?
        // The envelope decoder refuses an oversized request before parsing it.
        let decoded = decodeInbound(
            message.payload, expectedTypes: [EventType.flowRunRequested], required: ["flow_id"], codec: EventCodec())
        switch decoded.flatMap({ event in
            InboundFields.identifierProblem(
                event.data, ["flow_id", "idempotency_key", "mode", "on_behalf_of"], type: event.type
            ).map {
                .failure(EnvelopeProblem($0))
            } ?? .success(event)
        }) {
        case .failure(let problem):
            answer = ["error": Problem.badRequest(problem.reason).json]
        case .success(let event):
            requestEvent = event
            switch authorize(message.headers) {
            case .failure(let problem):
                answer = ["error": problem.json]
            case .success(let grant):
                answer = await startRequestedRun(event, grant: grant)
            }
        }
        let reply = CloudEvent(
            type: "FlowRunRequested.Reply", correlationid: requestEvent?.id, causationid: requestEvent?.id, data: answer
        )
        var replyRefused: String?
        if let to = message.replySubject {
            if let refusal = ReplySubjectPolicy.refusal(to, eventSubjects: configuration.eventSubjects) {
                replyRefused = refusal
                logger.warning(
                    "not answering a run request",
                    metadata: [LogKey.subject: "\(Subjects.flowRunRequest)", LogKey.error: "\(refusal)"])
            } else {
                try? ledger.reply(reply, to: to)
            }
        }
        // The token is never recorded: only who it stands for.
        let record: JSONValue = [
            "request": requestEvent.map { ["id": .string($0.id), "source": .string($0.source), "data": $0.data] } ?? [
                "payload": .string(String(decoding: message.payload.prefix(65_536), as: UTF8.self))
            ],
            "reply": answer, "reply_to": message.replySubject.map { JSONValue.string(String($0.prefix(256))) } ?? .null,
            "reply_refused": replyRefused.map(JSONValue.string) ?? .null,
        ]
        let recordEvent = CloudEvent(type: "FlowRunRequestHandled", correlationid: requestEvent?.id, data: record)
        _ = try? await ledger.send(recordEvent, on: Subjects.requestRecord("flow_run"))
    }

    /// The grant of the request's `Authorization: Bearer <token>` header, checked like HTTP: `operator` runs.
    func authorize(_ headers: [String: String]) -> Result<TokenGrant, Problem> {
        let header = headers.first { $0.key.lowercased() == "authorization" }?.value
        guard let token = AccessTokens.bearer(header) else {
            return .failure(
                .unauthorized(
                    "Send the header Authorization: Bearer <token> with the request (a token with the operator role)."))
        }
        guard let grant = configuration.tokens?.grant(for: token) else {
            return .failure(.unauthorized("The token is not known to this server."))
        }
        guard grant.role >= .`operator` else {
            return .failure(.forbidden(needs: "operator", has: grant.role.rawValue, to: "Running a flow"))
        }
        return .success(grant)
    }

    func startRequestedRun(_ event: CloudEvent<JSONValue>, grant: TokenGrant) async -> JSONValue {
        let mode: RunMode
        switch event.data["mode"]?.stringValue ?? "live_run" {
        case "live_run": mode = .live
        case "dry_run": mode = .dry
        case let other: return ["error": Problem.badRequest("mode must be live_run or dry_run, not \(other)").json]
        }
        if let onBehalfOf = event.data["on_behalf_of"], onBehalfOf.stringValue == nil, onBehalfOf != .null {
            return ["error": Problem.badRequest("on_behalf_of must be a user id (a string)").json]
        }
        do {
            let outcome = try await requestRun(
                ManualRunRequest(
                    flowID: event.data["flow_id"]?.stringValue ?? "", input: event.data["input"] ?? .object([:]),
                    mode: mode, idempotencyKey: event.data["idempotency_key"]?.stringValue, actor: grant.actor,
                    onBehalfOf: event.data["on_behalf_of"]?.stringValue, traceparent: event.traceparent))
            if case .duplicate = outcome { return ["run_id": .string(outcome.runID), "duplicate": true] }
            return ["run_id": .string(outcome.runID)]
        } catch {
            return ["error": (Problem(refusal: error) ?? .unavailable("\(error)")).json]
        }
    }
}
