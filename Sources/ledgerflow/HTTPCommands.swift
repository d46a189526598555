import ArgumentParser
import Foundation
import LedgerCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small client of the HTTP API for the CLI.
struct APIClient {
    let options: ServerOptions

    func call(_ method: String, _ path: String, body: Data? = nil) async throws -> (Int, JSONValue) {
        guard let url = URL(string: options.url + path) else { throw ValidationError("bad --url \(options.url)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let token = options.token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            print(
                "Could not reach Ledgerflow at \(options.url) (\(error.localizedDescription)). Is `ledgerflow dev` or `serve` running? Set --url or LEDGERFLOW_URL."
            )
            throw ExitCode(1)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let value =
            (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self))
        return (status, value)
    }

    /// Prints the answer; problems go to standard error with a non-zero exit.
    func show(_ result: (Int, JSONValue)) throws {
        let (status, value) = result
        if status >= 400 {
            var text =
                "\(status) \(value["code"]?.stringValue ?? ""): \(value["detail"]?.stringValue ?? value.compactJSON)"
            if case .array(let errors)? = value["errors"] {
                for error in errors {
                    text += "\n  \(error["path"]?.stringValue ?? ""): \(error["message"]?.stringValue ?? "")"
                }
            }
            FileHandle.standardError.write(Data((text + "\n").utf8))
            throw ExitCode(1)
        }
        print(pretty(value))
    }

    func pretty(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? value.compactJSON
    }
}

struct Flows: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage flow definitions.",
        subcommands: [Push.self, Get.self, List.self, Activate.self, Deactivate.self])

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a definition, or add a new version of it.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "A JSON definition file.") var file: String
        func run() async throws {
            let client = APIClient(options: server)
            let data = try Data(contentsOf: URL(fileURLWithPath: file))
            guard let json = try? JSONDecoder().decode(JSONValue.self, from: data), let id = json["id"]?.stringValue
            else {
                throw ValidationError("\(file) is not a JSON definition with an id")
            }
            let created = try await client.call("POST", "/automation/flows", body: data)
            if created.0 == 409, created.1["code"]?.stringValue == "flow_exists" {
                let (_, current) = try await client.call("GET", "/automation/flows/\(id)")
                guard case .object(var object) = json, let version = current["version"] else {
                    return try client.show(created)
                }
                object["version"] = version
                try client.show(
                    try await client.call(
                        "PUT", "/automation/flows/\(id)", body: Data(JSONValue.object(object).compactJSON.utf8)))
            } else {
                try client.show(created)
            }
        }
    }

    struct Get: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        @Argument var id: String
        @Option var version: Int?
        func run() async throws {
            try APIClient(options: server).show(
                try await APIClient(options: server).call(
                    "GET", "/automation/flows/\(id)" + (version.map { "?version=\($0)" } ?? "")))
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        func run() async throws {
            try APIClient(options: server).show(try await APIClient(options: server).call("GET", "/automation/flows"))
        }
    }

    struct Activate: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        @Argument var id: String
        func run() async throws {
            try APIClient(options: server).show(
                try await APIClient(options: server).call("POST", "/automation/flows/\(id)/activate"))
        }
    }

    struct Deactivate: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        @Argument var id: String
        func run() async throws {
            try APIClient(options: server).show(
                try await APIClient(options: server).call("POST", "/automation/flows/\(id)/deactivate"))
        }
    }
}

struct RunFlow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run an active flow by hand.")
    @OptionGroup var server: ServerOptions
    @Argument var flow: String
    @Option(help: "The run's input (a JSON object).") var input = "{}"
    @Flag(help: "Walk the graph without side effects.") var dryRun = false
    @Option(help: "The same key never starts a second run.") var idempotencyKey: String?
    @Option(help: "The user a run_as: user flow acts for (required for such flows).") var onBehalfOf: String?
    @Flag(help: "Wait for the run to finish and print it.") var wait = false

    func run() async throws {
        let client = APIClient(options: server)
        guard let inputValue = try? JSONDecoder().decode(JSONValue.self, from: Data(input.utf8)) else {
            throw ValidationError("--input is not JSON")
        }
        var body: [String: JSONValue] = ["input": inputValue, "mode": .string(dryRun ? "dry_run" : "live_run")]
        if let idempotencyKey { body["idempotency_key"] = .string(idempotencyKey) }
        if let onBehalfOf { body["on_behalf_of"] = .string(onBehalfOf) }
        let answer = try await client.call(
            "POST", "/automation/flows/\(flow)/run", body: Data(JSONValue.object(body).compactJSON.utf8))
        guard wait, answer.0 == 202, let runID = answer.1["run_id"]?.stringValue else { return try client.show(answer) }
        let deadline = ContinuousClock.now + .seconds(600)
        while ContinuousClock.now < deadline {
            let run = try await client.call("GET", "/automation/runs/\(runID)")
            if let status = run.1["status"]?.stringValue, ["SUCCEEDED", "FAILED", "CANCELLED"].contains(status) {
                return try client.show(run)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        print("run \(runID) has not finished after 10 minutes")
        throw ExitCode(1)
    }
}

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs as the read model holds them.", subcommands: [Show.self, List.self, Cancel.self])

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a run that has not finished (compensations run).")
        @OptionGroup var server: ServerOptions
        @Argument var run: String
        @Option var reason: String?
        func run() async throws {
            var body: [String: JSONValue] = [:]
            if let reason { body["reason"] = .string(reason) }
            try APIClient(options: server).show(
                try await APIClient(options: server).call(
                    "POST", "/automation/runs/\(run)/cancel", body: Data(JSONValue.object(body).compactJSON.utf8)))
        }
    }

    struct Show: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        @Argument var run: String
        func run() async throws {
            try APIClient(options: server).show(
                try await APIClient(options: server).call("GET", "/automation/runs/\(run)"))
        }
    }

    struct List: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        @Option var flowId: String?
        @Option var status: String?
        @Option var limit = 20
        func run() async throws {
            var query = "?limit=\(limit)"
            if let flowId { query += "&flow_id=\(flowId)" }
            if let status { query += "&status=\(status)" }
            try APIClient(options: server).show(
                try await APIClient(options: server).call("GET", "/automation/runs\(query)"))
        }
    }
}

struct DLQ: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Dead letters: failed runs, and webhook deliveries given up on.",
        subcommands: [List.self, Redrive.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var server: ServerOptions
        func run() async throws {
            try APIClient(options: server).show(try await APIClient(options: server).call("GET", "/automation/dlq"))
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Re-run a failed run from its failed step (or --from-step), reusing earlier results; or deliver a dead-lettered webhook delivery again (no --from-step)."
        )
        @OptionGroup var server: ServerOptions
        @Argument var run: String
        @Option var fromStep: String?
        func run() async throws {
            var body: [String: JSONValue] = [:]
            if let fromStep { body["from_step"] = .string(fromStep) }
            try APIClient(options: server).show(
                try await APIClient(options: server).call(
                    "POST", "/automation/runs/\(run)/redrive", body: Data(JSONValue.object(body).compactJSON.utf8)))
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The audit trail, newest first: who created, changed, (de)activated, ran, cancelled, redrove what.")
    @OptionGroup var server: ServerOptions
    @Option(help: "Only this flow.") var flow: String?
    @Option(help: "Only this actor (an id, or type:id).") var actor: String?
    @Option(help: "Only entries at or after this RFC 3339 time.") var since: String?
    @Option(help: "At most this many entries.") var limit = 50
    @Flag(help: "As JSON.") var json = false

    func run() async throws {
        var query: [String] = ["limit=\(limit)"]
        func add(_ name: String, _ value: String?) {
            guard let value else { return }
            query.append("\(name)=\(value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? value)")
        }
        add("flow_id", flow)
        add("actor", actor)
        add("since", since)
        let client = APIClient(options: server)
        let answer = try await client.call("GET", "/automation/audit?" + query.joined(separator: "&"))
        guard answer.0 == 200, !json, case .array(let entries)? = answer.1["entries"] else {
            return try client.show(answer)
        }
        for entry in entries {
            let actor =
                "\(entry[path: "actor.type"]?.stringValue ?? "?"):\(entry[path: "actor.id"]?.stringValue ?? "?")"
            let target = [entry["flow_id"], entry["run_id"], entry["token_id"]].compactMap { $0?.stringValue }.joined(
                separator: " ")
            print(
                "\(entry["at"]?.stringValue ?? "")  \(entry["action"]?.stringValue ?? "")  \(actor)  \(target)\(entry["mode"]?.stringValue.map { " (\($0))" } ?? "")"
            )
        }
    }
}
