import ChaosAudit
import Foundation
import LedgerCore
import LedgerEngine
import LedgerTestSupport
import Logging
import Synchronization

/// The flows the load runs: a chat command's flow (an HTTP call, then a calendar event) and a manual flow (the
/// calendar event, then the HTTP call). Every step retries long enough to outlive a lease, a paused nats-server
/// and an open circuit breaker (30 s), so a run ends by itself once everything is up again.
enum ChaosFlows {
    static let chat = "chaos-chat"
    static let manual = "chaos-manual"
    static let intent = "chaos.book"

    static func definitions(targetURL: String) -> [JSONValue] {
        let defaults: JSONValue = [
            "retry": ["max_attempts": 25, "backoff": "exponential", "initial_ms": 200, "max_ms": 4000],
            "timeout_sec": 3,
        ]
        func call(_ title: String, dependsOn: [String]) -> JSONValue {
            [
                "id": "call", "action": "http.request", "depends_on": .array(dependsOn.map(JSONValue.string)),
                "with": [
                    "method": "POST", "url": .string(targetURL), "expected_status": [200],
                    "body": ["run": "{{run.id}}", "title": .string(title)],
                ],
            ]
        }
        func book(_ title: String, _ start: String, dependsOn: [String]) -> JSONValue {
            [
                "id": "book", "action": "calendar.schedule_event",
                "depends_on": .array(dependsOn.map(JSONValue.string)),
                "timeout_sec": 5,
                "with": ["title": .string(title), "start": .string(start), "end": .string(start)],
                "compensate": [
                    "action": "calendar.cancel_event", "with": ["event_id": "{{steps.book.output.event_id}}"],
                ],
            ]
        }
        let inputs: JSONValue = [
            "title": ["type": "string", "required": true], "start": ["type": "string", "required": true],
        ]
        return [
            [
                "id": .string(chat), "name": "chaos: a chat command books over HTTP and the calendar",
                "trigger": ["event": "AssistantCommandIssued", "intent": .string(intent)], "inputs": inputs,
                "defaults": defaults,
                "steps": [
                    call("{{trigger.entities.title}}", dependsOn: []),
                    book("{{trigger.entities.title}}", "{{trigger.entities.start}}", dependsOn: ["call"]),
                ],
                "output": ["text": "booked {{steps.book.output.title}}"],
            ],
            [
                "id": .string(manual), "name": "chaos: a manual run books on the calendar, then over HTTP",
                "trigger": ["manual": true], "inputs": inputs, "defaults": defaults,
                "steps": [
                    book("{{input.title}}", "{{input.start}}", dependsOn: []),
                    call("{{input.title}}", dependsOn: ["book"]),
                ],
                "output": ["text": "booked {{steps.book.output.title}}"],
            ],
        ]
    }

    /// Registers and activates both flows through a worker's API (as an admin would).
    static func register(through worker: Worker, targetURL: String) async throws {
        for definition in definitions(targetURL: targetURL) {
            let id = definition["id"]!.stringValue!
            let (created, body) = try await worker.http.json("POST", "/automation/flows", definition)
            guard created == 201 || created == 409 else {
                throw ChaosError("registering \(id) answered \(created): \(body.compactJSON)")
            }
            let (activated, answer) = try await worker.http.json("POST", "/automation/flows/\(id)/activate")
            guard activated == 200 || activated == 409 else {
                throw ChaosError("activating \(id) answered \(activated): \(answer.compactJSON)")
            }
        }
    }
}

/// Sends the triggers: chat commands on `assistant.command.issued` (each acknowledged by the log, or retried with
/// the same message id) and manual runs over HTTP with an idempotency key (retried on another worker until one
/// answers 202). A trigger counts as accepted once the log or the API said so.
final class Load: Sendable {
    let ledger: Ledger
    let workers: [Worker]
    let seed: UInt64
    let random: SeededRandom
    let logger: Logger
    let sent = Atomic<Int>(0)
    let next = Atomic<Int>(0)
    private let acceptedTriggers = Mutex<[AcceptedTrigger]>([])
    private let refusals = Mutex<[String]>([])
    /// How long a trigger is retried before it is given up (inside the log's 2-minute duplicate window).
    let patience: Duration = .seconds(90)

    init(ledger: Ledger, workers: [Worker], seed: UInt64, logger: Logger) {
        self.ledger = ledger
        self.workers = workers
        self.seed = seed
        self.random = SeededRandom(seed: seed ^ 0x10AD)
        self.logger = logger
    }

    var accepted: [AcceptedTrigger] { acceptedTriggers.withLock { $0 } }
    var refused: [String] { refusals.withLock { $0 } }

    /// Runs `lanes` senders until `until`, each sending about `rate / lanes` triggers a second.
    func run(until end: ContinuousClock.Instant, rate: Double, lanes: Int) async {
        let gap = Duration.seconds(Double(lanes) / max(rate, 0.1))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<lanes {
                group.addTask {
                    while ContinuousClock.now < end, !Task.isCancelled {
                        let n = self.next.add(1, ordering: .relaxed).newValue
                        let began = ContinuousClock.now
                        if n % 3 == 0 { await self.manualRun(n) } else { await self.chatCommand(n) }
                        let spent = ContinuousClock.now - began
                        if spent < gap { try? await Task.sleep(for: gap - spent) }
                    }
                }
            }
        }
    }

    func chatCommand(_ n: Int) async {
        sent.add(1, ordering: .relaxed)
        let signal = "sig-\(seed)-\(n)"
        let data: JSONValue = [
            "message_id": .string("msg-\(seed)-\(n)"), "signal_id": .string(signal),
            "intent": .string(ChaosFlows.intent),
            "entities": ["title": .string("chaos \(n)"), "start": "2026-12-01T10:00:00Z"],
            "user": ["id": "u-chaos"], "channel": ["type": "chat", "conversation_id": "c-chaos"],
        ]
        let event = CloudEvent(
            id: "chaos-\(seed)-\(n)", source: "urn:ledgerflow:chaos", type: "AssistantCommandIssued", data: data)
        let deadline = ContinuousClock.now + patience
        while ContinuousClock.now < deadline {
            do {
                _ = try await ledger.send(event, on: "assistant.command.issued", retry: .once)
                acceptedTriggers.withLock { $0.append(AcceptedTrigger(flowID: ChaosFlows.chat, dedupKey: signal)) }
                return
            } catch {
                try? await Task.sleep(for: .milliseconds(300))
            }
        }
        refusals.withLock { $0.append("chat command \(signal): the log never acknowledged it within \(patience)") }
    }

    func manualRun(_ n: Int) async {
        sent.add(1, ordering: .relaxed)
        let key = "manual-\(seed)-\(n)"
        let body: JSONValue = [
            "input": ["title": .string("chaos \(n)"), "start": "2026-12-01T11:00:00Z"], "idempotency_key": .string(key),
        ]
        let deadline = ContinuousClock.now + patience
        var last = ""
        while ContinuousClock.now < deadline {
            let worker = workers[random.int(0...(workers.count - 1))]
            var client = worker.http
            client.timeout = 15
            if let (status, answer) = try? await client.json(
                "POST", "/automation/flows/\(ChaosFlows.manual)/run", body)
            {
                if status == 202 {
                    acceptedTriggers.withLock {
                        $0.append(
                            AcceptedTrigger(
                                flowID: ChaosFlows.manual,
                                dedupKey: ManualSignal.signalID(
                                    flowID: ChaosFlows.manual, mode: .live, idempotencyKey: key)))
                    }
                    return
                }
                last = "\(status) \(answer.compactJSON.prefix(200))"
                if (400..<500).contains(status), status != 408, status != 429 {
                    refusals.withLock { $0.append("manual run \(key) refused: \(last)") }
                    return
                }
            }
            try? await Task.sleep(for: .milliseconds(300))
        }
        refusals.withLock { $0.append("manual run \(key) was never accepted within \(patience) (last: \(last))") }
    }
}
