import ArgumentParser
import Foundation
import Hummingbird
import LedgerCore
import Logging
import Synchronization

/// `ledgerflow simulate webhook`: a receiver of output deliveries (seed 003's gateway endpoint) that checks each
/// delivery's `Ledgerflow-Signature` and prints it, for demos and for trying a flow's `output.webhook`.
struct WebhookSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook",
        abstract: "Receive output.webhook deliveries on POST /<any path>, check their signature and print them.")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on.") var port = 9000
    @Option(
        help: ArgumentHelp(
            "The secret the flow signs with (the value of its {{secrets.NAME}}); env LEDGERFLOW_WEBHOOK_SECRET.",
            valueName: "SECRET"))
    var secret: String?
    @Option(help: "Answer 503 to the first N deliveries of each Idempotency-Key (the sender retries).") var failFirst =
        0

    static let secretKey = "LEDGERFLOW_WEBHOOK_SECRET"

    func validate() throws {
        guard (1...65_535).contains(port) else { throw ValidationError("--port \(port): give a port from 1 to 65535") }
        guard (0...1_000).contains(failFirst) else {
            throw ValidationError("--fail-first \(failFirst): give a count from 0 to 1000")
        }
        if (secret ?? ProcessInfo.processInfo.environment[Self.secretKey] ?? "").isEmpty {
            throw ValidationError(
                "give the secret the flow signs with: --secret S or \(Self.secretKey)=S (the same value as the flow's LEDGERFLOW_SECRET_<NAME>)"
            )
        }
    }

    func run() async throws {
        let logger = makeLogger()
        let receiver = WebhookReceiver(
            secret: secret ?? ProcessInfo.processInfo.environment[Self.secretKey] ?? "", failFirst: failFirst)
        let router = Router()
        router.post("**") { request, _ in try await receiver.receive(request) }
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "ledgerflow-webhook-receiver"),
            logger: logger)
        print("webhook receiver on http://\(host):\(port)/ (any path); checking Ledgerflow-Signature")
        fflush(nil)
        try await app.runService()
    }
}

/// Checks and prints deliveries; answers 200, 401 for a bad signature, 503 while `failFirst` says so.
final class WebhookReceiver: Sendable {
    let secret: String
    let failFirst: Int
    private let seen = Mutex<[String: Int]>([:])

    init(secret: String, failFirst: Int) {
        self.secret = secret
        self.failFirst = failFirst
    }

    func receive(_ request: Request) async throws -> Response {
        let body = Array(buffer: try await request.body.collect(upTo: 1 << 20))
        func header(_ name: String) -> String? {
            request.headers.first { $0.name.canonicalName == name.lowercased() }?.value
        }
        let signature = header(WebhookSignature.header) ?? ""
        let key = header("Idempotency-Key") ?? "(none)"
        let verified = WebhookSignature.verify(
            signature, secret: secret, body: body, now: Int64(Date().timeIntervalSince1970))
        let count = seen.withLock { seen -> Int in
            seen[key, default: 0] += 1
            return seen[key]!
        }
        let event = try? JSONDecoder().decode(JSONValue.self, from: Data(body))
        let status: HTTPResponse.Status =
            !verified ? .unauthorized : count <= failFirst ? .serviceUnavailable : .ok
        let text = event?["data"]?["text"]?.stringValue.map { "\"\($0.prefix(200))\"" } ?? "-"
        print(
            "\(Timestamp.now())  POST \(request.uri.path)  key=\(key) delivery=\(count) signature=\(verified ? "verified" : "INVALID") kind=\(event?["data"]?["kind"]?.stringValue ?? "-") text=\(text) -> \(status.code)"
        )
        fflush(nil)
        return Response(status: status)
    }
}
