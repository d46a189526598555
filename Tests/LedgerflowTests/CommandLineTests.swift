import Foundation
import LedgerCore
import LedgerDevServices
import LedgerNATS
import LedgerProjections
import LedgerTestSupport
import Testing

@testable import LedgerEngine

extension Integration {
    @Suite struct CommandLineTests {
        /// `ledgerflow tokens create|list|revoke`: the token printed once, only its hash in the file, each change
        /// recorded in the log first (and so in the audit trail); nothing changes when the log cannot be reached.
        @Test func tokensAreCreatedListedAndRevokedWithEveryChangeAudited() async throws {
            try await withTestStack { stack in
                let directory = TemporaryDirectory()
                let file = "\(directory.path)/tokens.json"
                let common = ["--tokens-file", file, "--nats-url", TestServer.url, "--actor", "ci"]
                let (created, output) = try ledgerflow(
                    ["tokens", "create", "--role", "viewer", "--subject", "alice"] + common)
                #expect(created == 0, "\(output)")
                let token = try #require(output.split(separator: "\n").first { $0.hasPrefix("lf_") }.map(String.init))
                let records = try TokenFile.read(file)
                #expect(records.count == 1)
                #expect(!(try String(contentsOfFile: file, encoding: .utf8)).contains(token))
                let id = try #require(records.first?.id)
                #expect(try AccessTokens([], file: file).grant(for: token)?.subject == "alice")
                let (listed, list) = try ledgerflow(["tokens", "list", "--tokens-file", file])
                #expect(listed == 0)
                #expect(list.contains(id) && list.contains("alice") && !list.contains(token), "\(list)")
                let (bad, badOutput) = try ledgerflow(
                    ["tokens", "create", "--role", "root", "--subject", "x"] + common)
                #expect(bad != 0)
                #expect(badOutput.contains("viewer, operator, admin"), "\(badOutput)")
                // The log unreachable: nothing changes.
                let (offline, offlineOutput) = try ledgerflow([
                    "tokens", "revoke", id, "--tokens-file", file, "--nats-url",
                    "nats://127.0.0.1:\(LocalNATSServer.freePort())",
                ])
                #expect(offline != 0)
                #expect(offlineOutput.contains("Nothing was changed"), "\(offlineOutput)")
                #expect(try TokenFile.read(file).count == 1)
                let (revoked, revokedOutput) = try ledgerflow(["tokens", "revoke", id] + common)
                #expect(revoked == 0, "\(revokedOutput)")
                #expect(try TokenFile.read(file).isEmpty)
                try await eventually("both changes are in the audit trail") {
                    try stack.store.audit(flowID: nil, actor: "cli:ci", since: nil, limit: 10).count == 2
                }
                let trail = try stack.store.audit(flowID: nil, actor: "cli:ci", since: nil, limit: 10)
                #expect(trail.map(\.action) == ["token_revoke", "token_create"])
                #expect(trail.allSatisfy { $0.token_id == id })
                #expect(trail.last?.after == ["subject": "alice", "role": "viewer"])
                for message in try await stack.ledger.read(subject: Subjects.tokenAudit) {
                    #expect(!String(decoding: message.payload, as: UTF8.self).contains(token))
                }
            }
        }

        /// `ledgerflow schedules list|preview|pause|resume|backfill` against a running stack, and what a bad
        /// argument says.
        @Test func schedulesSubcommandsListPreviewPauseResumeAndBackfill() async throws {
            try await withTestStack { stack in
                let flow: JSONValue = [
                    "id": "cli-sched", "trigger": ["interval": "1h"],
                    "steps": [["id": "a", "action": "transform", "with": ["value": "{{trigger.scheduled_at}}"]]],
                ]
                #expect(try await stack.http("POST", "/automation/flows", flow).0 == 201)
                #expect(try await stack.http("POST", "/automation/flows/cli-sched/activate").0 == 200)
                let server = ["--url", "http://127.0.0.1:\(stack.port)", "--token", stack.token]

                let (listed, list) = try ledgerflow(["schedules", "list"] + server)
                #expect(listed == 0, "\(list)")
                let answer = try JSONTree.parse(Array(list.utf8), maxDepth: 64)
                let entry = try #require(answer["schedules"]?.arrayValue?.first { $0["flow_id"] == "cli-sched" })
                #expect(entry[path: "schedule.interval"] == "1h")
                #expect(entry[path: "policy.overlap"] == "skip")
                #expect(entry["next_firings"]?.arrayValue?.count == 3)
                #expect(entry["paused"] == false)

                let (previewed, preview) = try ledgerflow(
                    [
                        "schedules", "preview", "0 9 * * MON-FRI", "--timezone", "Europe/Madrid", "--count", "3",
                        "--from", "2026-03-27T00:00:00Z",
                    ] + server)
                #expect(previewed == 0, "\(preview)")
                #expect(
                    preview.split(separator: "\n").map(String.init)
                        == ["2026-03-27T09:00:00+01:00", "2026-03-30T09:00:00+02:00", "2026-03-31T09:00:00+02:00"])

                let (paused, pauseOutput) = try ledgerflow(
                    ["schedules", "pause", "cli-sched", "--reason", "maintenance"] + server)
                #expect(paused == 0, "\(pauseOutput)")
                #expect(try stack.store.schedule("cli-sched")?.paused == true)
                #expect(try stack.store.schedule("cli-sched")?.pause_reason == "maintenance")
                let (resumed, resumeOutput) = try ledgerflow(["schedules", "resume", "cli-sched"] + server)
                #expect(resumed == 0, "\(resumeOutput)")
                #expect(try stack.store.schedule("cli-sched")?.paused == false)

                let (backfilled, backfill) = try ledgerflow(
                    [
                        "schedules", "backfill", "cli-sched", "--from", "2026-01-01T00:00:00Z", "--to",
                        "2026-01-01T01:00:00Z",
                    ] + server)
                #expect(backfilled == 0, "\(backfill)")
                let firings = try JSONTree.parse(Array(backfill.utf8), maxDepth: 64)["firings"]?.arrayValue ?? []
                #expect(firings.compactMap { $0["outcome"]?.stringValue } == ["started", "started"], "\(backfill)")
                for firing in firings {
                    let runID = try #require(firing["run_id"]?.stringValue)
                    try await eventually("the backfilled run \(runID) succeeded") {
                        try stack.store.run(runID)?.status == .succeeded
                    }
                }

                // Bad arguments: what is wrong, and a non-zero exit.
                let (badCron, badCronOutput) = try ledgerflow(["schedules", "preview", "*/0 * * * *"] + server)
                #expect(badCron != 0)
                #expect(badCronOutput.contains("minute field"), "\(badCronOutput)")
                let (badTime, badTimeOutput) = try ledgerflow(
                    ["schedules", "backfill", "cli-sched", "--from", "last week", "--to", "2026-01-01T00:00:00Z"]
                        + server)
                #expect(badTime != 0)
                #expect(badTimeOutput.contains("from is not an RFC 3339 time"), "\(badTimeOutput)")
                let (unknown, unknownOutput) = try ledgerflow(["schedules", "pause", "no-such-flow"] + server)
                #expect(unknown != 0)
                #expect(unknownOutput.contains("no-such-flow"), "\(unknownOutput)")
                let (missing, missingOutput) = try ledgerflow(["schedules", "backfill", "cli-sched"] + server)
                #expect(missing != 0)
                #expect(missingOutput.contains("--from"), "\(missingOutput)")
            }
        }

        @Test func replayShowsTheRunFromTheLogAndItsStateAtAnyPosition() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                try stack.publishCommand(id: "replay-1", title: "Replayed")
                let run = try #require(try await stack.waitForRuns(1).first)
                let (status, output) = try ledgerflow(["replay", run.run_id, "--nats-url", TestServer.url])
                #expect(status == 0, "\(output)")
                for expected in [
                    "FlowRunStarted", "StepAttemptStarted", "StepAttemptSucceeded", "AssistantCommandIssued",
                    "CalendarEvent.Created", "FlowRunSucceeded", "\"status\" : \"SUCCEEDED\"",
                ] {
                    #expect(output.contains(expected), "replay lacks \(expected):\n\(output)")
                }
                let startedAt = try #require(
                    try await stack.ledger.read(subject: Subjects.run(run.run_id)).first?.sequence)
                let (atStatus, atOutput) = try ledgerflow([
                    "replay", run.run_id, "--at", String(startedAt), "--nats-url", TestServer.url,
                ])
                #expect(atStatus == 0)
                #expect(atOutput.contains("State as of log sequence \(startedAt)"))
                #expect(atOutput.contains("\"status\" : \"RUNNING\""))
                let (tailStatus, tail) = try ledgerflow([
                    "tail", "--from", "1", "--type", "FlowRunSucceeded", "--limit", "1", "--nats-url", TestServer.url,
                ])
                #expect(tailStatus == 0)
                #expect(tail.contains("ledger.run.\(run.run_id)  FlowRunSucceeded run \(run.run_id)"), "\(tail)")
                let (missing, missingOutput) = try ledgerflow(["replay", "no-such-run", "--nats-url", TestServer.url])
                #expect(missing != 0)
                #expect(missingOutput.contains("No events for run no-such-run"))
            }
        }

        @Test func verifyExitsZeroOnAWholeLogOneWhenAMessageIsDeletedAndTwoWhenItCannotRead() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                for i in 0..<2 { try stack.publishCommand(id: "verify-\(i)") }
                let run = try #require(try await stack.waitForRuns(2).first)
                let (clean, cleanOutput) = try ledgerflow(["verify", "--nats-url", TestServer.url])
                #expect(clean == 0, "\(cleanOutput)")
                #expect(cleanOutput.contains("no problems"), "\(cleanOutput)")

                let messages = try await stack.ledger.read(subject: Subjects.run(run.run_id))
                try #require(messages.count >= 3)
                try await stack.ledger.api.deleteMessage(stream: stack.ledger.stream, sequence: messages[1].sequence)
                let (broken, brokenOutput) = try ledgerflow(["verify", "--nats-url", TestServer.url])
                #expect(broken == 1, "\(brokenOutput)")
                #expect(brokenOutput.contains("broken_chain"), "\(brokenOutput)")
                #expect(brokenOutput.contains("ledger.run.\(run.run_id) at \(messages[2].sequence)"), "\(brokenOutput)")
                let (json, jsonOutput) = try ledgerflow(["verify", "--json", "--nats-url", TestServer.url])
                #expect(json == 1)
                let line = try #require(jsonOutput.split(separator: "\n").last { $0.hasPrefix("{") }, "\(jsonOutput)")
                let report = try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
                #expect(report["ok"] == false, "\(jsonOutput)")

                let nowhere = "nats://127.0.0.1:\(LocalNATSServer.freePort())"
                let (unread, unreadOutput) = try ledgerflow(["verify", "--nats-url", nowhere])
                #expect(unread == 2, "\(unreadOutput)")
                #expect(unreadOutput.contains("Could not read the log"), "\(unreadOutput)")
            }
        }

        @Test func rebuildingTheReadModelsFromTheLogGivesTheSameModels() async throws {
            try await withTestStack { stack in
                try await stack.activateExample()
                for i in 0..<3 { try stack.publishCommand(id: "rebuild-\(i)") }
                _ = try await stack.waitForRuns(3)
                let (verified, output) = try ledgerflow([
                    "projections", "rebuild", "--verify", "--data-dir", stack.lmdb.path, "--nats-url", TestServer.url,
                ])
                #expect(verified == 0, "\(output)")
                #expect(output.contains("Verified: the rebuilt read models equal the live ones"))
                let live = try stack.store.dump()
                await stack.stop()

                // Delete the read models and rebuild them from the log.
                try FileManager.default.removeItem(atPath: "\(stack.lmdb.path)/lmdb")
                let (rebuilt, rebuildOutput) = try ledgerflow([
                    "projections", "rebuild", "--data-dir", stack.lmdb.path, "--nats-url", TestServer.url,
                ])
                #expect(rebuilt == 0, "\(rebuildOutput)")
                #expect(rebuildOutput.contains("100%"), "a progress bar")
                let again = try ReadModelStore(path: "\(stack.lmdb.path)/lmdb", mapSize: 1 << 30)
                try expectSameModels(try again.dump(), live)
            }
        }

        @Test func aMissingNatsServerIsExplained() throws {
            let (status, output) = try ledgerflow([
                "replay", "x", "--nats-url", "nats://127.0.0.1:\(LocalNATSServer.freePort())",
            ])
            #expect(status != 0)
            #expect(output.contains("is nats-server running there?"), "\(output)")
        }
    }
}
