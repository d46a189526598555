import Foundation
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerNATS
import LedgerTestSupport
import Testing

/// Connections that log in (user and password, token, nkey) and use TLS, each against a nats-server of its own
/// started with the matching configuration (not the shared one: these tests run beside the others).
@Suite(.timeLimit(.minutes(5)))
struct NATSCredentialsTests {
    static let password = "pw-Zq81-secret"

    static func connect(_ url: String, _ credentials: NATSCredentials = .none) async throws -> NATSConnection {
        let connection = try await NATSConnection.connect(
            url: url, name: "credentials-test", logger: testLogger, timeout: .seconds(5), credentials: credentials)
        try await connection.flush()
        return connection
    }

    /// The error of connecting, which must fail.
    static func refusal(_ url: String, _ credentials: NATSCredentials = .none) async throws -> NATSError {
        do {
            let connection = try await connect(url, credentials)
            connection.close()
        } catch let error as NATSError {
            return error
        }
        Issue.record("connecting with \(credentials.user ?? "no user") was accepted")
        throw RuntimeError("connected")
    }

    @Test func userAndPasswordConnectAndWrongOnesAreRefusedClearlyWithoutTheSecret() async throws {
        let configuration = """
            authorization { users: [ { user: alice, password: "\(Self.password)" } ] }
            """
        try await withConfiguredServer(configuration) { server in
            let good = try await Self.connect(server.url, NATSCredentials(user: "alice", password: Self.password))
            #expect(good.isConnected)
            good.close()

            for wrong in [
                NATSCredentials(user: "alice", password: "not-\(Self.password)"),
                NATSCredentials(user: "mallory", password: Self.password), NATSCredentials.none,
            ] {
                let error = try await Self.refusal(server.url, wrong)
                #expect(error.isAuthorizationFailure, "\(error)")
                #expect(!error.isUnreachable, "a refusal is no reason to wait for the server")
                #expect(error.message.contains("refused the credentials"), "\(error)")
                #expect(error.message.contains("Authorization Violation"), "\(error)")
                #expect(!error.message.contains(Self.password), "the password is never shown")
            }

            // Credentials in the URL still work, and the URL the connection shows hides the password.
            let inURL = "nats://alice:\(Self.password)@127.0.0.1:\(server.port)"
            let viaURL = try await Self.connect(inURL)
            #expect(viaURL.url == "nats://alice:***@127.0.0.1:\(server.port)")
            viaURL.close()
            let wrongInURL = try await Self.refusal("nats://alice:nope-\(Self.password)@127.0.0.1:\(server.port)")
            #expect(wrongInURL.isAuthorizationFailure)
            #expect(!wrongInURL.message.contains(Self.password), "\(wrongInURL)")
        }
    }

    @Test func theLedgerSaysWhichOptionToCheckAndDoesNotWaitForARefusingServer() async throws {
        let configuration = """
            authorization { users: [ { user: ledgerflow, password: "\(Self.password)" } ] }
            """
        try await withConfiguredServer(configuration) { server in
            let url = server.url
            let right = NATSConnectOptions(user: "ledgerflow", password: Self.password)
            let ledger = try await Ledger.open(
                url: url, setup: .createOrUpdate, connectOptions: right, logger: testLogger)
            #expect(try await ledger.lastSequence() == 0)
            ledger.close()

            let wrong = NATSConnectOptions(user: "ledgerflow", password: "wrong-\(Self.password)")
            // Were a refusal taken for an unreachable server, openWhenReachable would try again until the deadline.
            let error = await #expect(throws: NATSAccessRefused.self) {
                try await withDeadline(.seconds(60), "openWhenReachable with a wrong password") {
                    try await Ledger.openWhenReachable(
                        url: url, setup: .createOrUpdate, connectOptions: wrong, logger: testLogger)
                }
            }
            let text = error?.description ?? ""
            #expect(text.contains("refused the credentials: Authorization Violation"), "\(text)")
            #expect(text.contains("check --nats-user and --nats-password"), "\(text)")
            #expect(!text.contains(Self.password), "\(text)")

            let none = await #expect(throws: NATSAccessRefused.self) {
                try await Ledger.open(url: url, logger: testLogger)
            }
            #expect(
                none?.description.contains("this server asks for credentials") == true, "\(String(describing: none))")
        }
    }

    @Test func aTokenConnectsAndAWrongOneIsRefused() async throws {
        let token = "tok-\(UUID().uuidString)"
        try await withConfiguredServer("authorization { token: \"\(token)\" }\n") { server in
            let good = try await Self.connect(server.url, NATSCredentials(token: token))
            good.close()
            let error = try await Self.refusal(server.url, NATSCredentials(token: "x\(token)"))
            #expect(error.isAuthorizationFailure, "\(error)")
            #expect(!error.message.contains(token))
            let refused = await #expect(throws: NATSAccessRefused.self) {
                try await Ledger.open(
                    url: server.url, connectOptions: NATSConnectOptions(token: "x\(token)"), logger: testLogger)
            }
            #expect(refused?.description.contains("check --nats-token") == true)
        }
    }

    @Test func anNKeySeedFileConnectsAsTheUserWhosePublicKeyTheServerLists() async throws {
        let directory = TemporaryDirectory("nkeys")
        let user = try TestNKey(in: directory.path, name: "user")
        let stranger = try TestNKey(in: directory.path, name: "stranger")
        // The public key Ledgerflow derives from the seed is the one openssl computed.
        #expect(try NKeys.publicKey(ofSeedFile: user.seedFile) == user.publicKey)
        #expect(user.publicKey.hasPrefix("U") && user.publicKey.count == 56)
        try await withConfiguredServer("authorization { users: [ { nkey: \(user.publicKey) } ] }\n") { server in
            let good = try await Self.connect(server.url, NATSCredentials(nkeySeedFile: user.seedFile))
            good.close()
            let error = try await Self.refusal(server.url, NATSCredentials(nkeySeedFile: stranger.seedFile))
            #expect(error.isAuthorizationFailure, "\(error)")
        }
    }

    @Test func nkeySeedsRoundTripAndDamagedOnesAreRefused() throws {
        let seed = (0..<32).map { UInt8($0 * 7 % 256) }
        let encoded = NKeys.encodeSeed(seed)
        #expect(encoded.hasPrefix("SU") && encoded.count == 58)
        let decoded = try NKeys.decodeSeed(encoded)
        #expect(decoded.seed == seed && decoded.prefix == NKeys.userPrefix)
        var damaged = Array(encoded)
        damaged[20] = damaged[20] == "A" ? "B" : "A"
        #expect(throws: NKeys.Invalid.self) { try NKeys.decodeSeed(String(damaged)) }
        #expect(throws: NKeys.Invalid.self) { try NKeys.decodeSeed(NKeys.encodePublicKey(seed)) }
    }

    @Test func tlsWithAClientCertificateConnectsAndWithoutOneIsRefusedClearly() async throws {
        let directory = TemporaryDirectory("tls")
        let certificates = try TestCertificates(in: directory.path)
        let configuration = """
            tls {
              cert_file: "\(certificates.serverCertificate)"
              key_file: "\(certificates.serverKey)"
              ca_file: "\(certificates.ca)"
              verify: true
              timeout: 5
            }
            """
        try await withConfiguredServer(configuration) { server in
            let full = NATSCredentials(
                tlsCAFile: certificates.ca, tlsCertificateFile: certificates.clientCertificate,
                tlsKeyFile: certificates.clientKey)
            let good = try await Self.connect(server.url, full)
            good.close()
            let tlsURL = try await Self.connect("tls://127.0.0.1:\(server.port)", full)
            tlsURL.close()

            // Without a client certificate the server ends the handshake.
            let noCertificate = try await Self.refusal(server.url, NATSCredentials(tlsCAFile: certificates.ca))
            #expect(noCertificate.isTLSFailure, "\(noCertificate)")
            #expect(noCertificate.message.contains("no client certificate"), "\(noCertificate)")
            #expect(!noCertificate.isUnreachable, "\(noCertificate)")
            let ledgerError = await #expect(throws: NATSAccessRefused.self) {
                try await Ledger.open(
                    url: server.url, connectOptions: NATSConnectOptions(tlsCAFile: certificates.ca),
                    logger: testLogger)
            }
            #expect(ledgerError?.description.contains("--nats-tls-") == true, "\(String(describing: ledgerError))")

            // A CA that did not sign the server's certificate: the client refuses the server.
            var untrusted = full
            untrusted.tlsCAFile = certificates.otherCA
            let wrongCA = try await Self.refusal(server.url, untrusted)
            #expect(wrongCA.isTLSFailure, "\(wrongCA)")
            #expect(wrongCA.message.contains("unable to get local issuer certificate"), "\(wrongCA)")

            // No TLS at all on a server that requires it.
            let plain = try await Self.refusal(server.url)
            #expect(plain.isTLSFailure, "\(plain)")
        }
    }

    @Test func urlsAreShownWithoutTheirSecrets() {
        #expect(NATSConnection.redacted("nats://u:p@h:4222") == "nats://u:***@h:4222")
        #expect(NATSConnection.redacted("nats://tok@h:4222") == "nats://***@h:4222")
        #expect(NATSConnection.redacted("nats://h:4222") == "nats://h:4222")
        #expect(
            NATSConnection.redacted("nats://a:b@n1:4222,nats://a:b@n2:4222")
                == "nats://a:***@n1:4222,nats://a:***@n2:4222")
        #expect(NATSConnectOptions.urlHasCredentials("nats://a:b@n1:4222"))
        #expect(!NATSConnectOptions.urlHasCredentials("nats://n1:4222,tls://n2:4222"))
        let options = NATSConnectOptions(user: "u", password: "secret-pw", token: "secret-token")
        #expect(!options.description.contains("secret"))
    }
}
