import LedgerCore
import LedgerNATS
import Logging

extension Ledger {
    /// The NATS URL as it may be shown: a password or token written in it is replaced by `***`.
    public static func displayURL(_ url: String) -> String { NATSConnection.redacted(url) }

    /// Connects with `options`; a refusal of the credentials or of TLS becomes an error that says what to check
    /// (and is never retried: it is not a server that is not reachable yet).
    static func connect(
        url: String, name: String, options: NATSConnectOptions, logger: Logger
    ) async throws -> NATSConnection {
        do {
            return try await NATSConnection.connect(
                url: url, name: name, logger: logger, credentials: options)
        } catch let error as NATSError where error.isAuthorizationFailure {
            throw NATSAccessRefused(
                "\(error.message); \(Self.credentialsHint(options, url: url))", reason: .credentials)
        } catch let error as NATSError where error.isTLSFailure {
            throw NATSAccessRefused(
                "\(error.message); check --nats-tls-ca (the CA that signed the server's certificate) and, when the server verifies clients, --nats-tls-cert and --nats-tls-key (or their LEDGERFLOW_NATS_TLS_* variables), and that the server has TLS on",
                reason: .tls)
        }
    }

    static func credentialsHint(_ options: NATSConnectOptions, url: String) -> String {
        if options.user != nil || options.password != nil {
            return "check --nats-user and --nats-password (LEDGERFLOW_NATS_USER, LEDGERFLOW_NATS_PASSWORD)"
        }
        if options.token != nil { return "check --nats-token (LEDGERFLOW_NATS_TOKEN)" }
        if let file = options.credentialsFile {
            return "check the credentials file \(file) (--nats-creds, LEDGERFLOW_NATS_CREDS)"
        }
        if let file = options.nkeySeedFile {
            return
                "check that the server lists the public key of the seed in \(file) (--nats-nkey, LEDGERFLOW_NATS_NKEY)"
        }
        if NATSConnectOptions.urlHasCredentials(url) { return "check the user and password written in --nats-url" }
        return
            "this server asks for credentials: give --nats-user and --nats-password, --nats-token, --nats-creds or --nats-nkey (or their LEDGERFLOW_NATS_* variables)"
    }
}

/// NATS refused this process: its credentials, or the TLS handshake. Starting again with the same settings cannot
/// succeed, so it is reported at once.
public struct NATSAccessRefused: Error, CustomStringConvertible, Sendable {
    public enum Reason: Sendable { case credentials, tls }
    public var description: String
    public var reason: Reason
    init(_ description: String, reason: Reason) {
        self.description = description
        self.reason = reason
    }
}
