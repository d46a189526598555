import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// Options of commands that connect to NATS: its URL, and how to log in and secure the connection.
struct NATSOptions: ParsableArguments {
    @Option(
        name: .customLong("nats-url"),
        help: ArgumentHelp(
            "NATS server URL, or the servers of a cluster separated by commas (env LEDGERFLOW_NATS_URL). A user and password written in it (nats://user:pass@host) work too.",
            valueName: "URL"))
    var natsURL: String = ProcessInfo.processInfo.environment["LEDGERFLOW_NATS_URL"] ?? "nats://127.0.0.1:4222"

    @OptionGroup var access: NATSAccessOptions

    func validate() throws {
        try access.check(url: natsURL)
    }

    /// The credentials and TLS settings to connect with.
    var connectOptions: NATSConnectOptions { access.connectOptions }

    /// The URL as it may be printed (no password or token).
    var displayURL: String { Ledger.displayURL(natsURL) }
}

/// How to log in to NATS and secure the connection; each option also read from the environment (better for secrets:
/// a command line is visible to every user of the machine in `ps`).
struct NATSAccessOptions: ParsableArguments {
    @Option(
        name: .customLong("nats-user"),
        help: ArgumentHelp("NATS user, with --nats-password (env LEDGERFLOW_NATS_USER).", valueName: "USER"))
    var userOption: String?
    @Option(
        name: .customLong("nats-password"),
        help: ArgumentHelp("NATS password of --nats-user (env LEDGERFLOW_NATS_PASSWORD).", valueName: "PASSWORD"))
    var passwordOption: String?
    @Option(
        name: .customLong("nats-token"),
        help: ArgumentHelp("NATS authorization token (env LEDGERFLOW_NATS_TOKEN).", valueName: "TOKEN"))
    var tokenOption: String?
    @Option(
        name: .customLong("nats-creds"),
        help: ArgumentHelp(
            "NATS credentials file: user JWT and nkey seed, as `nsc` writes it (env LEDGERFLOW_NATS_CREDS).",
            valueName: "FILE"))
    var credsOption: String?
    @Option(
        name: .customLong("nats-nkey"),
        help: ArgumentHelp(
            "File holding a user nkey seed (SU...), for a server that lists the user's public key (env LEDGERFLOW_NATS_NKEY). With --nats-creds: the seed of a creds file that holds only the JWT.",
            valueName: "FILE"))
    var nkeyOption: String?
    @Option(
        name: .customLong("nats-tls-ca"),
        help: ArgumentHelp(
            "PEM file of the CA that signed the server's certificate; turns TLS on (env LEDGERFLOW_NATS_TLS_CA).",
            valueName: "FILE"))
    var tlsCAOption: String?
    @Option(
        name: .customLong("nats-tls-cert"),
        help: ArgumentHelp(
            "PEM client certificate, for a server that verifies clients; with --nats-tls-key (env LEDGERFLOW_NATS_TLS_CERT).",
            valueName: "FILE"))
    var tlsCertOption: String?
    @Option(
        name: .customLong("nats-tls-key"),
        help: ArgumentHelp(
            "PEM private key of --nats-tls-cert (env LEDGERFLOW_NATS_TLS_KEY).", valueName: "FILE"))
    var tlsKeyOption: String?

    /// One setting: its value and where it came from (the option or its variable), for messages.
    struct Setting {
        var value: String
        var source: String
    }

    private func setting(_ option: String?, flag: String, environment key: String) -> Setting? {
        if let option { return Setting(value: option, source: flag) }
        if let value = ProcessInfo.processInfo.environment[key], !value.isEmpty {
            return Setting(value: value, source: key)
        }
        return nil
    }

    var user: Setting? { setting(userOption, flag: "--nats-user", environment: "LEDGERFLOW_NATS_USER") }
    var password: Setting? {
        setting(passwordOption, flag: "--nats-password", environment: "LEDGERFLOW_NATS_PASSWORD")
    }
    var token: Setting? { setting(tokenOption, flag: "--nats-token", environment: "LEDGERFLOW_NATS_TOKEN") }
    var creds: Setting? { setting(credsOption, flag: "--nats-creds", environment: "LEDGERFLOW_NATS_CREDS") }
    var nkey: Setting? { setting(nkeyOption, flag: "--nats-nkey", environment: "LEDGERFLOW_NATS_NKEY") }
    var tlsCA: Setting? { setting(tlsCAOption, flag: "--nats-tls-ca", environment: "LEDGERFLOW_NATS_TLS_CA") }
    var tlsCert: Setting? {
        setting(tlsCertOption, flag: "--nats-tls-cert", environment: "LEDGERFLOW_NATS_TLS_CERT")
    }
    var tlsKey: Setting? { setting(tlsKeyOption, flag: "--nats-tls-key", environment: "LEDGERFLOW_NATS_TLS_KEY") }

    var connectOptions: NATSConnectOptions {
        NATSConnectOptions(
            user: user?.value, password: password?.value, token: token?.value, credentialsFile: creds?.value,
            nkeySeedFile: nkey?.value, tlsCAFile: tlsCA?.value, tlsCertificateFile: tlsCert?.value,
            tlsKeyFile: tlsKey?.value)
    }

    /// Whether any of these is set (by option or environment).
    var isEmpty: Bool { connectOptions == .none }

    /// Refuses combinations that cannot work and files that cannot be read, saying what to do. Never shows a
    /// password or token.
    func check(url: String?) throws {
        for secret in [user, password, token].compactMap({ $0 }) where secret.value.isEmpty {
            throw ValidationError("\(secret.source) is empty")
        }
        if let password, user == nil {
            throw ValidationError("\(password.source) needs --nats-user (or LEDGERFLOW_NATS_USER)")
        }
        if let user, password == nil {
            throw ValidationError("\(user.source) needs --nats-password (or LEDGERFLOW_NATS_PASSWORD)")
        }
        // A creds file may take its seed from --nats-nkey; any other pair is two ways of logging in.
        var ways: [String] = []
        if let user { ways.append("\(user.source) and its password") }
        if let token { ways.append(token.source) }
        if let creds { ways.append(creds.source) }
        if let nkey, creds == nil { ways.append(nkey.source) }
        if ways.count > 1 {
            throw ValidationError(
                "\(ways.joined(separator: " and ")) are two ways of logging in to NATS; give only one (user and password, a token, a creds file or an nkey seed file)"
            )
        }
        if let url, let way = ways.first, NATSConnectOptions.urlHasCredentials(url) {
            throw ValidationError(
                "--nats-url \(Ledger.displayURL(url)) carries credentials and \(way) gives others; give them one way only"
            )
        }
        if let tlsCert, tlsKey == nil {
            throw ValidationError(
                "\(tlsCert.source) needs --nats-tls-key (or LEDGERFLOW_NATS_TLS_KEY), its private key")
        }
        if let tlsKey, tlsCert == nil {
            throw ValidationError(
                "\(tlsKey.source) needs --nats-tls-cert (or LEDGERFLOW_NATS_TLS_CERT), the certificate of that key")
        }
        for file in [creds, nkey, tlsCA, tlsCert, tlsKey].compactMap({ $0 }) {
            if let problem = Self.unreadable(file.value) {
                throw ValidationError("cannot read \(file.source) \(file.value): \(problem)")
            }
        }
    }

    /// `dev` starts a nats-server of its own, without authorization, unless given --nats-url: options given on its
    /// command line without --nats-url are a mistake (variables left in the environment are ignored).
    func checkForDev(natsURL: String?) throws {
        if let natsURL { return try check(url: natsURL) }
        let given: [(String?, String)] = [
            (userOption, "--nats-user"), (passwordOption, "--nats-password"), (tokenOption, "--nats-token"),
            (credsOption, "--nats-creds"), (nkeyOption, "--nats-nkey"), (tlsCAOption, "--nats-tls-ca"),
            (tlsCertOption, "--nats-tls-cert"), (tlsKeyOption, "--nats-tls-key"),
        ]
        if let flag = given.first(where: { $0.0 != nil })?.1 {
            throw ValidationError(
                "\(flag) is for a NATS server given with --nats-url; the nats-server dev starts itself needs no credentials"
            )
        }
    }

    /// Why the file cannot be read, or nil.
    static func unreadable(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return "no such file"
        }
        if isDirectory.boolValue { return "it is a directory; give the file" }
        guard FileManager.default.isReadableFile(atPath: path) else {
            return "permission denied (this process runs as user \(ProcessInfo.processInfo.userName))"
        }
        return nil
    }
}
