import Foundation
public import LedgerDevServices
import LedgerEngine
import LedgerNATS

/// nats-servers of a test's own, started with a configuration (authorization, TLS, permissions), and the key
/// material they need, made with `openssl` at test time. Each server is stopped when `body` ends, however it ends
/// (and dies with the test process in any case: see LocalNATSServer's lifeline).
public func withConfiguredServer<R>(
    _ configuration: String, directory: TemporaryDirectory = TemporaryDirectory("nats-conf"),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (LocalNATSServer) async throws -> R
) async throws -> R {
    let server = try LocalNATSServer(
        dataDirectory: "\(directory.path)/nats", configuration: configuration, logger: testLogger)
    defer { server.stop() }
    return try await body(server)
}

/// The repository's `examples/nats/server.conf` with its port and store directory replaced for a test server.
public func exampleServerConfiguration(storeDirectory: String) throws -> String {
    let path = Fixtures.examples.appendingPathComponent("../nats/server.conf").standardized.path
    let text = try String(contentsOfFile: path, encoding: .utf8)
    guard text.contains("store_dir: /var/lib/nats") else {
        throw RuntimeError("\(path) no longer says store_dir: /var/lib/nats; update exampleServerConfiguration")
    }
    return text.replacingOccurrences(of: "store_dir: /var/lib/nats", with: "store_dir: \"\(storeDirectory)\"")
}

/// Runs a tool (openssl) to its end, at most `timeout`; throws with its output when it fails.
@discardableResult
public func runTool(
    _ executable: String, _ arguments: [String], in directory: String, timeout: Duration = .seconds(30)
) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    let output = "\(directory)/.tool-output-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: output, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
    defer { try? handle.close() }
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    let deadline = ContinuousClock.now + timeout
    while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
        throw RuntimeError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
    }
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    try? FileManager.default.removeItem(atPath: output)
    guard process.terminationStatus == 0 else {
        throw RuntimeError("\(executable) \(arguments.joined(separator: " ")) failed: \(text)")
    }
    return text
}

/// `openssl` from PATH (tools/setup installs it).
public func opensslPath() throws -> String {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
        let candidate = "\(directory)/openssl"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw RuntimeError("the TLS and nkey tests need openssl (run tools/setup, or apt-get install openssl)")
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all signed by the CA.
public struct TestCertificates: Sendable {
    public let ca: String
    public let serverCertificate: String
    public let serverKey: String
    public let clientCertificate: String
    public let clientKey: String
    /// A second CA that signed nothing here: trusting it, a client cannot verify the server.
    public let otherCA: String

    public init(in directory: String) throws {
        let openssl = try opensslPath()
        func run(_ arguments: [String]) throws { try runTool(openssl, arguments, in: directory) }
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for name in ["ca", "other-ca"] {
            try run(
                ["req", "-x509"] + curve + [
                    "-keyout", "\(name)-key.pem", "-out", "\(name).pem", "-days", "2", "-subj",
                    "/CN=ledgerflow-test-\(name)",
                ])
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(
            toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(
            toFile: "\(directory)/client.ext", atomically: true, encoding: .utf8)
        for (name, serial) in [("server", "2"), ("client", "3")] {
            try run(
                ["req"] + curve + [
                    "-keyout", "\(name)-key.pem", "-out", "\(name).csr", "-subj", "/CN=ledgerflow-test-\(name)",
                ])
            try run([
                "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-set_serial", serial,
                "-days", "2", "-out", "\(name)-cert.pem", "-extfile", "\(name).ext",
            ])
        }
        ca = "\(directory)/ca.pem"
        otherCA = "\(directory)/other-ca.pem"
        serverCertificate = "\(directory)/server-cert.pem"
        serverKey = "\(directory)/server-key.pem"
        clientCertificate = "\(directory)/client-cert.pem"
        clientKey = "\(directory)/client-key.pem"
    }
}

/// A user nkey made with openssl (ed25519): its public key (`U...`, for the server's configuration) computed by
/// openssl, independently of Ledgerflow's derivation, and its seed (`SU...`) in a file.
public struct TestNKey: Sendable {
    public let publicKey: String
    public let seedFile: String

    public init(in directory: String, name: String = "user") throws {
        let openssl = try opensslPath()
        try runTool(openssl, ["genpkey", "-algorithm", "ed25519", "-out", "\(name).pem"], in: directory)
        try runTool(openssl, ["pkey", "-in", "\(name).pem", "-outform", "DER", "-out", "\(name).der"], in: directory)
        try runTool(
            openssl, ["pkey", "-in", "\(name).pem", "-pubout", "-outform", "DER", "-out", "\(name).pub.der"],
            in: directory)
        // PKCS#8 and SubjectPublicKeyInfo of an ed25519 key both end with the 32 raw bytes.
        let privateDER = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name).der")))
        let publicDER = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name).pub.der")))
        guard privateDER.count == 48, publicDER.count == 44 else {
            throw RuntimeError("openssl wrote an ed25519 key of an unexpected shape")
        }
        publicKey = NKeys.encodePublicKey(Array(publicDER.suffix(32)))
        seedFile = "\(directory)/\(name).nk"
        try (NKeys.encodeSeed(Array(privateDER.suffix(32))) + "\n").write(
            toFile: seedFile, atomically: true, encoding: .utf8)
    }
}

/// Runs `body`, failing with a timeout error if it has not finished within `timeout` (it is then cancelled).
public func withDeadline<R: Sendable>(
    _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> R
) async throws -> R {
    try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let result = first else {
            throw RuntimeError("\(what) did not finish within \(timeout)")
        }
        return result
    }
}
