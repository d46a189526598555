import ArgumentParser
import Foundation
import LedgerCore

/// `ledgerflow schedules list | preview | pause | resume | backfill` (over the HTTP API).
struct Schedules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cron and interval schedules: list them, preview an expression, pause, resume, backfill.",
        subcommands: [List.self, Preview.self, Pause.self, Resume.self, Backfill.self])

    static func encoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-_.~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Every schedule: next firings, last firing and its run, policy, paused, skipped firings by class.")
        @OptionGroup var server: ServerOptions
        func run() async throws {
            let client = APIClient(options: server)
            try client.show(try await client.call("GET", "/automation/schedules"))
        }
    }

    struct Preview: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The next firings of a cron expression (RFC 3339 with offsets), to check it before saving it.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "A five-field cron expression, such as \"0 9 * * MON-FRI\".") var cron: String
        @Option(help: "An IANA time zone (default UTC).") var timezone: String?
        @Option(help: "How many firings (1 to 1000).") var count = 10
        @Option(help: "From this RFC 3339 time (default now).") var from: String?
        func run() async throws {
            var query = "?cron=\(Schedules.encoded(cron))&count=\(count)"
            if let timezone { query += "&timezone=\(Schedules.encoded(timezone))" }
            if let from { query += "&from=\(Schedules.encoded(from))" }
            let client = APIClient(options: server)
            let answer = try await client.call("GET", "/automation/schedules/preview" + query)
            guard answer.0 == 200, case .array(let firings)? = answer.1["firings"] else {
                return try client.show(answer)
            }
            for firing in firings { print(firing.stringValue ?? "") }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pause a flow's schedule (its firings are recorded as skipped, class paused); audited.")
        @OptionGroup var server: ServerOptions
        @Argument var flow: String
        @Option var reason: String?
        func run() async throws { try await Schedules.change(server, flow, "pause", reason) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused schedule; audited.")
        @OptionGroup var server: ServerOptions
        @Argument var flow: String
        @Option var reason: String?
        func run() async throws { try await Schedules.change(server, flow, "resume", reason) }
    }

    struct Backfill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the firings of a past time range that have no outcome yet (at most 1000).")
        @OptionGroup var server: ServerOptions
        @Argument var flow: String
        @Option(help: "RFC 3339 time.") var from: String
        @Option(help: "RFC 3339 time.") var to: String
        func run() async throws {
            let body: JSONValue = ["from": .string(from), "to": .string(to)]
            let client = APIClient(options: server)
            try client.show(
                try await client.call(
                    "POST", "/automation/schedules/\(Schedules.encoded(flow))/backfill",
                    body: Data(body.compactJSON.utf8)))
        }
    }

    static func change(_ server: ServerOptions, _ flow: String, _ action: String, _ reason: String?) async throws {
        var body: [String: JSONValue] = [:]
        if let reason { body["reason"] = .string(reason) }
        let client = APIClient(options: server)
        try client.show(
            try await client.call(
                "POST", "/automation/schedules/\(encoded(flow))/\(action)",
                body: Data(JSONValue.object(body).compactJSON.utf8)))
    }
}
