import Foundation
import LedgerCore
import LedgerEngine
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Testing

extension Integration {
    /// Seed 004's rules over both the SPEC's routes and seed 004's own, on a running stack (real NATS and LMDB).
    @Suite struct AdminTests {
        /// A flow a chat command starts, whose output reads the chat command's entities.
        static func echoFlow(_ id: String, runAs: String? = nil) -> JSONValue {
            var flow: [String: JSONValue] = [
                "id": .string(id), "name": "Echo",
                "trigger": ["event": "AssistantCommandIssued", "intent": .string("echo.\(id)")],
                "steps": [["id": "shape", "action": "transform", "with": ["value": "{{trigger.entities.title}}"]]],
                "output": ["text": "Got {{trigger.entities.title}} for {{trigger.user.id}}"],
            ]
            if let runAs { flow["run_as"] = .string(runAs) }
            return .object(flow)
        }

        @Test func theLifecycleRulesOfSeed004() async throws {
            try await withTestStack { stack in
                // Created as draft only: asking for another status is refused naming `status`, nothing is created.
                var active = Self.echoFlow("life").objectValue!
                active["status"] = "active"
                let (refused, problem) = try await stack.http("POST", "/automation/flows", .object(active))
                #expect(refused == 422)
                #expect(problem["code"] == "invalid_definition")
                #expect(problem[path: "errors.0.path"] == "status", "\(problem.compactJSON)")
                #expect(try await stack.http("GET", "/automation/flows/life").0 == 404)
                // A trigger and at least one step; every action in the registry.
                let (noTrigger, why) = try await stack.http(
                    "POST", "/automation/flows", ["id": "bare", "steps": [["id": "a", "action": "transform"]]])
                #expect(noTrigger == 422)
                #expect(why["errors"]?.compactJSON.contains("\"trigger\"") == true, "\(why.compactJSON)")
                let (noSteps, _) = try await stack.http(
                    "POST", "/automation/flows", ["id": "empty", "trigger": ["manual": true], "steps": []])
                #expect(noSteps == 422)
                // Draft: created, unique, does not run.
                #expect(try await stack.http("POST", "/automation/flows", Self.echoFlow("life")).0 == 201)
                #expect(
                    try await stack.http("POST", "/automation/flows", Self.echoFlow("life")).1["code"] == "flow_exists")
                let (draftRun, notActive) = try await stack.http("POST", "/automation/flows/life/run", ["input": [:]])
                #expect(draftRun == 409)
                #expect(notActive["detail"]?.stringValue?.contains("only active automations can be executed") == true)
                // A new version needs the version it is based on, and cannot change the status.
                var next = Self.echoFlow("life").objectValue!
                #expect(try await stack.http("PUT", "/automation/flows/life", .object(next)).0 == 400)
                next["version"] = 3
                let (conflict, current) = try await stack.http("PUT", "/automation/flows/life", .object(next))
                #expect(conflict == 409)
                #expect(current["code"] == "version_conflict")
                #expect(current["current_version"] == 1)
                next["version"] = 1
                next["status"] = "active"
                let (statusChange, statusProblem) = try await stack.http("PUT", "/automation/flows/life", .object(next))
                #expect(statusChange == 422)
                #expect(statusProblem[path: "errors.0.path"] == "status")
                next["status"] = nil
                let (updated, record) = try await stack.http("PUT", "/automation/flows/life", .object(next))
                #expect(updated == 200)
                #expect(record["version"] == 2)
                #expect(record["status"] == "draft")
            }
        }

        /// A flow whose current version uses an action this process no longer offers is marked broken by an event,
        /// runs no more, cannot be activated, and comes back once a valid version is saved.
        @Test func aFlowTheRegistryNoLongerAcceptsIsMarkedBrokenUntilAValidVersion() async throws {
            try await withTestStack { stack in
                let flow: JSONValue = [
                    "id": "calls-out", "trigger": ["event": "AssistantCommandIssued", "intent": "calls.out"],
                    "steps": [["id": "notify", "action": "notify", "with": ["message": "hi"]]],
                ]
                #expect(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/calls-out/activate").0 == 200)
                var admin = FlowAdmin(ledger: stack.ledger, store: stack.store)
                admin.registry = ActionRegistry.builtIn.without(["notify"])
                #expect(try await admin.markBrokenFlows() == ["calls-out"])
                #expect(try await admin.markBrokenFlows() == [], "marked once")
                let (_, record) = try await stack.http("GET", "/automation/flows/calls-out")
                #expect(record["status"] == "broken")
                let broken = try await stack.log().compactMap(\.event).filter { $0.type == EventType.flowMarkedBroken }
                #expect(broken.count == 1)
                #expect(broken.first?.data["reason"]?.stringValue?.contains("notify") == true)
                let (activate, refusal) = try await stack.http("POST", "/automation/flows/calls-out/activate")
                #expect(activate == 409)
                #expect(refusal["code"] == "invalid_state")
                #expect(try await stack.http("POST", "/automation/flows/calls-out/run", ["input": [:]]).0 == 409)
                // A valid version, then activation works again.
                var fixed = flow.objectValue!
                fixed["steps"] = [["id": "t", "action": "transform", "with": ["value": 1]]]
                fixed["version"] = 1
                #expect(try await stack.http("PUT", "/automation/flows/calls-out", .object(fixed)).0 == 200)
                let (reactivated, answer) = try await stack.http("POST", "/automation/flows/calls-out/activate")
                #expect(reactivated == 200, "\(answer.compactJSON)")
            }
        }

        /// Seed 004's own routes end to end: create (draft only), execute refused until active, dry and live
        /// executions answered with the run id, its steps and errors, edit with versions, deactivate.
        @Test func seed004RoutesEndToEnd() async throws {
            try await withTestStack { stack in
                let base = "/admin/api/automations"
                let definition: JSONValue = [
                    "trigger": ["event": "AssistantCommandIssued", "intent": "welcome"],
                    "steps": [
                        ["id": "greet", "action": "transform", "with": ["value": "Hola {{trigger.entities.name}}"]],
                        [
                            "id": "tell", "action": "notify", "depends_on": ["greet"],
                            "with": ["message": "{{steps.greet.output}}"],
                        ],
                    ],
                    "output": ["text": "{{steps.greet.output}}"],
                ]
                let (asked, statusProblem) = try await stack.http(
                    "POST", base,
                    ["automation_key": "welcome", "name": "Welcome", "definition": definition, "status": "active"])
                #expect(asked == 422)
                #expect(statusProblem[path: "errors.0.path"] == "status")
                let (noKey, _) = try await stack.http("POST", base, ["name": "Welcome", "definition": definition])
                #expect(noKey == 400)
                let (created, automation) = try await stack.http(
                    "POST", base,
                    [
                        "automation_key": "welcome", "name": "Welcome", "description": "Greets new users",
                        "definition": definition,
                    ])
                #expect(created == 201, "\(automation.compactJSON)")
                #expect(automation["status"] == "draft")
                #expect(automation["automation_key"] == "welcome")
                #expect(automation["description"] == "Greets new users")
                let context: JSONValue = ["name": "Ana"]
                let (draft, refusal) = try await stack.http(
                    "POST", "\(base)/welcome/execute", ["mode": "live_run", "context": context])
                #expect(draft == 409)
                #expect(refusal["code"] == "invalid_state")
                #expect(try await stack.http("POST", "\(base)/welcome/activate").1["status"] == "active")
                #expect(try await stack.http("POST", "\(base)/welcome/execute", ["context": context]).0 == 400)
                #expect(
                    try await stack.http("POST", "\(base)/welcome/execute", ["mode": "fast", "context": context]).0
                        == 400)

                // dry_run: the graph walked, nothing sent, the run recorded as dry.
                let notificationsBefore = try await stack.ledger.read(subject: Subjects.notificationSend).count
                let (dry, dryAnswer) = try await stack.http(
                    "POST", "\(base)/welcome/execute", ["mode": "dry_run", "context": context])
                #expect(dry == 200, "\(dryAnswer.compactJSON)")
                #expect(dryAnswer["status"] == "SUCCEEDED")
                #expect(dryAnswer["steps"]?.arrayValue?.count == 2)
                #expect(dryAnswer[path: "steps.0.status"] == "SUCCEEDED")
                #expect(dryAnswer["errors"] == [])
                #expect(dryAnswer[path: "output.text"] == "Hola Ana")
                let dryID = try #require(dryAnswer["run_id"]?.stringValue)
                let dryRun = try #require(try stack.store.run(dryID))
                #expect(dryRun.mode == .dry)
                #expect(try await stack.ledger.read(subject: Subjects.notificationSend).count == notificationsBefore)

                // live_run: an artificial signal in the log, then the run, with the admin as actor.
                let (live, liveAnswer) = try await stack.http(
                    "POST", "\(base)/welcome/execute", ["mode": "live_run", "context": context])
                #expect(live == 200, "\(liveAnswer.compactJSON)")
                let runID = try #require(liveAnswer["run_id"]?.stringValue)
                let signalID = try #require(liveAnswer["signal_id"]?.stringValue)
                let signals = try await stack.ledger.read(subject: Subjects.signal(signalID))
                #expect(signals.count == 1)
                let signal = try JSONTree.parse(try #require(signals.first).payload)
                #expect(signal["type"] == .string(EventType.manualSignalIssued))
                #expect(signal[path: "data.signal_type"] == "AssistantCommandIssued")
                #expect(signal[path: "data.metadata.source.type"] == "manual")
                #expect(signal[path: "data.metadata.source.actor"] == ["type": "admin", "id": "tester"])
                #expect(signal[path: "data.metadata.trace_id"]?.stringValue?.isEmpty == false)
                #expect(signal[path: "data.metadata.executed_at"]?.stringValue?.isEmpty == false)
                #expect(signal[path: "data.payload.entities"] == context)
                let run = try #require(try stack.store.run(runID))
                #expect(run.trigger.kind == .manual)
                let signalSequence = try #require(signals.first).sequence
                #expect(run.trigger.sequence == signalSequence)
                #expect(run.dedup_key == signalID)
                #expect(run.actor == "tester")
                #expect(run.actor_type == "admin")
                #expect(
                    try await stack.ledger.read(subject: Subjects.notificationSend).count == notificationsBefore + 1)

                // Edit: the version it is based on, else 409 with the current one; only allowed fields.
                let (stale, conflict) = try await stack.http("PUT", "\(base)/welcome", ["version": 7, "name": "Hi"])
                #expect(stale == 409)
                #expect(conflict["current_version"] == 1)
                #expect(try await stack.http("PUT", "\(base)/welcome", ["version": 1, "owner": "me"]).0 == 422)
                let (edited, editedView) = try await stack.http("PUT", "\(base)/welcome", ["version": 1, "name": "Hi"])
                #expect(edited == 200, "\(editedView.compactJSON)")
                #expect(editedView["version"] == 2)
                #expect(editedView["name"] == "Hi")
                #expect(editedView["description"] == "Greets new users")
                #expect(editedView["status"] == "active")
                // Deactivated (deprecated): execute refused, deactivate again refused.
                #expect(try await stack.http("POST", "\(base)/welcome/deactivate").1["status"] == "deprecated")
                #expect(try await stack.http("POST", "\(base)/welcome/deactivate").0 == 409)
                #expect(
                    try await stack.http("POST", "\(base)/welcome/execute", ["mode": "live_run"]).1["code"]
                        == "invalid_state")
            }
        }

        /// A manual run's signal has the shape of the trigger's event: the flow renders the same as from chat. The
        /// same idempotency key is the same signal (one run); a user flow needs the user it acts for.
        @Test func aManualSignalRendersAsTheChatCommandWouldAndActsForTheNamedUser() async throws {
            try await withTestStack { stack in
                #expect(
                    try await stack.http("POST", "/automation/flows", Self.echoFlow("echo", runAs: "user")).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/echo/activate").0 == 200)
                let chat = CloudEvent(
                    source: "assistant", type: EventType.assistantCommandIssued,
                    data: [
                        "message_id": "m-1", "intent": "echo.echo", "entities": ["title": "Standup"],
                        "user": ["id": "u-7"], "channel": ["type": "chat", "conversation_id": "c-1"],
                    ] as JSONValue)
                try stack.outside.publish(
                    subject: Subjects.assistantCommandIssued, payload: try EventCodec().encode(chat),
                    headers: ["Nats-Msg-Id": chat.id])
                let fromChat = try #require(try await stack.waitForRuns(1).first)
                // Never silently as the operator.
                let (refused, why) = try await stack.http(
                    "POST", "/automation/flows/echo/run", ["input": ["title": "Standup"]],
                    token: .bearer(TestStack.operatorToken))
                #expect(refused == 400)
                #expect(why["detail"]?.stringValue?.contains("on_behalf_of") == true, "\(why.compactJSON)")
                let (ran, finished) = try await stack.http(
                    "POST", "/automation/flows/echo/run?wait=true",
                    ["input": ["title": "Standup"], "on_behalf_of": "u-7", "idempotency_key": "once"],
                    token: .bearer(TestStack.operatorToken))
                #expect(ran == 200, "\(finished.compactJSON)")
                #expect(finished["status"] == "SUCCEEDED")
                #expect(finished["output"]?["text"] == fromChat.output?["text"])
                #expect(finished[path: "output.text"] == "Got Standup for u-7")
                #expect(finished["on_behalf_of"] == "u-7")
                #expect(finished["actor"] == "otto")
                let (again, same) = try await stack.http(
                    "POST", "/automation/flows/echo/run",
                    ["input": ["title": "Standup"], "on_behalf_of": "u-7", "idempotency_key": "once"])
                #expect(again == 202)
                #expect(same["run_id"] == finished["run_id"])
                #expect(same["duplicate"] == true)
                // Every flow can also be run by hand (SPEC §5): a trigger's `match` selects the events that start it, not
                // the manual signals that name it.
                var picky = Self.echoFlow("picky").objectValue!
                picky["trigger"] = [
                    "event": "AssistantCommandIssued", "intent": "echo.picky", "match": ["entities.priority": "high"],
                ]
                picky["output"] = ["text": "{{trigger.message_id}}"]
                #expect(try await stack.http("POST", "/automation/flows", .object(picky)).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/picky/activate").0 == 200)
                // The signal has the event's shape: `message_id` too (the signal's id).
                let (matched, pickyRun) = try await stack.http(
                    "POST", "/automation/flows/picky/run?wait=true", ["input": ["priority": "low"]])
                #expect(matched == 200, "\(pickyRun.compactJSON)")
                #expect(pickyRun[path: "output.text"] == pickyRun["dedup_key"])
                // A service flow takes no user.
                var service = Self.echoFlow("svc", runAs: "service").objectValue!
                service["output"] = ["text": "done"]
                #expect(try await stack.http("POST", "/automation/flows", .object(service)).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/svc/activate").0 == 200)
                #expect(
                    try await stack.http("POST", "/automation/flows/svc/run", ["input": [:], "on_behalf_of": "u-7"]).0
                        == 400)
            }
        }

        /// Every create, update, activate, deactivate, execute, cancel and redrive is in the audit trail with its
        /// actor, time, before and after; newest first, filtered by flow, actor and time.
        @Test func theAuditTrailRecordsWhoDidWhatNewestFirst() async throws {
            try await withTestStack { stack in
                let before = Timestamp.now()
                #expect(try await stack.http("POST", "/automation/flows", Self.echoFlow("audited")).0 == 201)
                var next = Self.echoFlow("audited").objectValue!
                next["version"] = 1
                next["name"] = "Echo v2"
                #expect(try await stack.http("PUT", "/automation/flows/audited", .object(next)).0 == 200)
                #expect(try await stack.http("POST", "/automation/flows/audited/activate").0 == 200)
                let (ran, answer) = try await stack.http(
                    "POST", "/automation/flows/audited/run", ["input": ["title": "x"], "mode": "dry_run"],
                    token: .bearer(TestStack.operatorToken))
                #expect(ran == 202)
                let runID = try #require(answer["run_id"]?.stringValue)
                #expect(try await stack.http("POST", "/automation/flows/audited/deactivate").0 == 200)
                let (status, trail) = try await stack.http("GET", "/automation/audit?flow_id=audited")
                #expect(status == 200)
                let entries = try #require(trail["entries"]?.arrayValue)
                #expect(
                    entries.compactMap { $0["action"]?.stringValue }
                        == ["deactivate", "execute", "activate", "update", "create"], "\(trail.compactJSON)")
                #expect(entries[0]["actor"] == ["type": "admin", "id": "tester"])
                #expect(entries[0][path: "before.status"] == "active")
                #expect(entries[0][path: "after.status"] == "deprecated")
                #expect(entries[1]["actor"] == ["type": "operator", "id": "otto"])
                #expect(entries[1]["mode"] == "dry_run")
                #expect(entries[1]["run_id"] == .string(runID))
                #expect(entries[3][path: "before.definition.name"] == "Echo")
                #expect(entries[3][path: "after.definition.name"] == "Echo v2")
                #expect(entries[4]["before"] == nil)
                #expect(entries[4][path: "after.version"] == 1)
                for entry in entries { #expect(entry["at"]?.stringValue.flatMap(Timestamp.parse) != nil) }
                // Filters: the actor, the time, the limit.
                let byOtto = try await stack.http("GET", "/automation/audit?actor=operator:otto").1["entries"]
                #expect(byOtto?.arrayValue?.map { $0["action"] } == ["execute"])
                #expect(
                    try await stack.http("GET", "/automation/audit?flow_id=audited&limit=2").1["entries"]?.arrayValue?
                        .count == 2)
                let since = before.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                #expect(
                    try await stack.http("GET", "/automation/audit?flow_id=audited&since=\(since)").1["entries"]?
                        .arrayValue?.count == 5)
                #expect(
                    try await stack.http("GET", "/automation/audit?since=2999-01-01T00:00:00%2B01:00").1["entries"]
                        == [])
                #expect(try await stack.http("GET", "/automation/audit?since=yesterday").0 == 400)
                // The trail is a fold of the log like every read model: a rebuild gives the same table.
                try await stack.expectRebuildEqualsLive()
            }
        }

        /// The tokens file holds hashes only; a token created there works at once, and a revoked one stops working
        /// without a restart.
        @Test func theTokensFileKeepsHashesAndARevokedTokenStopsWorking() async throws {
            let directory = TemporaryDirectory()
            let path = "\(directory.path)/tokens.json"
            let (token, record) = TokenFile.mint(
                subject: "alice", role: .viewer, createdBy: "cli:test", at: Timestamp.now())
            try TokenFile.write([record], to: path)
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(!text.contains(token))
            #expect(text.contains(record.hash))
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let tokens = try AccessTokens([], file: path)
            #expect(tokens.grant(for: token) == TokenGrant(id: record.id, subject: "alice", role: .viewer))
            #expect(tokens.grant(for: token + "x") == nil)
            #expect(tokens.grant(for: "") == nil)
            try TokenFile.write([], to: path)
            try await eventually("the revoked token is refused") { tokens.grant(for: token) == nil }
            // A broken file stops a start with what to do, and never keeps a token in plain text.
            try Data(#"[{"token": "plain", "subject": "bob", "role": "admin"}]"#.utf8).write(
                to: URL(fileURLWithPath: path))
            #expect(throws: TokenFile.Problem.self) { try AccessTokens([], file: path) }
        }
    }
}
