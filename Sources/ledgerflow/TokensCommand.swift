import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// Where the tokens file is: `--tokens-file`, else `LEDGERFLOW_TOKENS_FILE`, else `<data-dir>/tokens.json`.
struct TokenFileOptions: ParsableArguments {
    @Option(
        name: .customLong("tokens-file"),
        help:
            "Tokens file (env LEDGERFLOW_TOKENS_FILE; default <data-dir>/tokens.json), written by `ledgerflow tokens`.")
    var tokensFileOption: String?

    func path(dataDirectory: String) -> String {
        tokensFileOption ?? ProcessInfo.processInfo.environment["LEDGERFLOW_TOKENS_FILE"]
            ?? "\(dataDirectory)/tokens.json"
    }

    /// The tokens `serve` and `dev` accept: `admin` (given to the process) and the file's, read again when it
    /// changes. A file that cannot be read stops the start with what to do.
    func tokens(admin: [AccessToken], dataDirectory: String) throws -> AccessTokens {
        let file = path(dataDirectory: dataDirectory)
        do {
            return try AccessTokens(admin, file: file)
        } catch {
            print("Cannot start: \(error).")
            throw ExitCode(1)
        }
    }
}

struct Tokens: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "API tokens: create (printed once), list, revoke. The file keeps SHA-256 hashes only.",
        subcommands: [Create.self, List.self, Revoke.self])

    /// Options every tokens subcommand shares.
    struct Shared: ParsableArguments {
        @OptionGroup var file: TokenFileOptions
        @Option(help: "The data directory whose tokens.json is meant (when --tokens-file is not given).")
        var dataDir = "./.ledgerflow"

        var path: String { file.path(dataDirectory: dataDir) }

        func read() throws -> [TokenRecord] {
            do {
                return try TokenFile.read(path)
            } catch {
                print("\(error)")
                throw ExitCode(1)
            }
        }

        func write(_ tokens: [TokenRecord]) throws {
            do {
                try TokenFile.write(tokens, to: path)
            } catch {
                print("\(error). The change is recorded in the log but not in the file: run the command again.")
                throw ExitCode(1)
            }
        }
    }

    /// Records a token change in the log (the audit trail) before the file changes; nothing changes if it cannot.
    static func record(_ change: AccessTokenChanged, nats: NATSOptions) async throws {
        let logger = makeLogger()
        do {
            let ledger = try await Ledger.open(
                url: nats.natsURL, clientName: "ledgerflow-tokens", connectOptions: nats.connectOptions, logger: logger)
            defer { ledger.close() }
            let event = CloudEvent(
                source: LedgerSource.cli,
                type: change.change == "revoked" ? EventType.tokenRevoked : EventType.tokenCreated, data: change)
            try await ledger.send(event, on: Subjects.tokenAudit, retry: .once)
        } catch {
            print(
                "Nothing was changed: the token change could not be recorded in the log at \(nats.displayURL) (\(error)). Every token change is audited; start NATS (or give --nats-url / LEDGERFLOW_NATS_URL) and run the command again."
            )
            throw ExitCode(1)
        }
    }

    /// Who runs the command, as the audit trail records it: `--actor`, else the login name.
    static func actor(_ given: String?) -> ActorRef {
        let login =
            ProcessInfo.processInfo.environment["USER"]
            ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) }
        return ActorRef(type: "cli", id: given ?? login ?? "unknown")
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token for a subject with a role; the token is printed once and only its hash is kept.")
        @Option(help: "viewer, operator or admin.") var role: String
        @Option(help: "Who the token stands for: the actor the log records for what it does.") var subject: String
        @Option(help: "Who creates it, for the audit trail (default: $USER).") var actor: String?
        @OptionGroup var shared: Shared
        @OptionGroup var nats: NATSOptions

        func run() async throws {
            guard let role = Role(rawValue: role) else {
                throw ValidationError(
                    "--role \(role) is not a role; use one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !subject.isEmpty, subject.utf8.count <= Limits.identifierBytes,
                subject.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f })
            else {
                throw ValidationError(
                    "--subject must be 1 to \(Limits.identifierBytes) bytes without spaces or control characters")
            }
            let path = shared.path
            try await TokenFile.withLock(path) { try await create(role) }
        }

        func create(_ role: Role) async throws {
            var tokens = try shared.read()
            let by = Tokens.actor(actor)
            let (token, record) = TokenFile.mint(
                subject: subject, role: role, createdBy: "\(by.type):\(by.id)", at: Timestamp.now())
            try await Tokens.record(
                AccessTokenChanged(
                    token_id: record.id, subject: subject, role: role.rawValue, change: "created", actor: by.id,
                    actor_type: by.type),
                nats: nats)
            tokens.append(record)
            try shared.write(tokens)
            print(token)
            FileHandle.standardError.write(
                Data(
                    "token \(record.id) for \(subject) (\(role.rawValue)) added to \(shared.path); it is shown only this once\n"
                        .utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tokens: id, subject, role, created (never the token).")
        @OptionGroup var shared: Shared
        @Flag(help: "As JSON.") var json = false

        func run() async throws {
            let tokens = try shared.read()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                let shown = tokens.map {
                    ["id": $0.id, "subject": $0.subject, "role": $0.role.rawValue, "created_at": $0.created_at]
                }
                print(String(decoding: try encoder.encode(shown), as: UTF8.self))
                return
            }
            if tokens.isEmpty {
                print("No tokens in \(shared.path). Create one: ledgerflow tokens create --role viewer --subject alice")
                return
            }
            for record in tokens {
                print(
                    "\(record.id)  \(record.role.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0))  \(record.subject)  created \(record.created_at)\(record.created_by.map { " by \($0)" } ?? "")"
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token by its id (tok_…); a running server refuses it within a second.")
        @Argument(help: "The token's id, as `tokens list` shows it.") var id: String
        @Option(help: "Who revokes it, for the audit trail (default: $USER).") var actor: String?
        @OptionGroup var shared: Shared
        @OptionGroup var nats: NATSOptions

        func run() async throws {
            try await TokenFile.withLock(shared.path) { try await revoke() }
        }

        func revoke() async throws {
            var tokens = try shared.read()
            guard let record = tokens.first(where: { $0.id == id }) else {
                print("No token \(id) in \(shared.path); `ledgerflow tokens list` shows the ids.")
                throw ExitCode(1)
            }
            let by = Tokens.actor(actor)
            try await Tokens.record(
                AccessTokenChanged(
                    token_id: record.id, subject: record.subject, role: record.role.rawValue, change: "revoked",
                    actor: by.id, actor_type: by.type),
                nats: nats)
            tokens.removeAll { $0.id == id }
            try shared.write(tokens)
            print("revoked \(id) (\(record.subject), \(record.role.rawValue))")
        }
    }
}
