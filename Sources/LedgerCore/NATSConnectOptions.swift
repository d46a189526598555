import Foundation

/// How a process proves who it is to NATS and how it secures the connection: user and password, a token, a
/// `.creds` file (user JWT and nkey seed) or an nkey seed file, and TLS (the CA to trust, a client certificate and
/// its key). A plain value: the NATS adapter applies it, the command line fills it in. `.none` is what a server
/// without authorization needs (credentials written in the URL, `nats://user:pass@host`, still work then).
public struct NATSConnectOptions: Sendable, Equatable, CustomStringConvertible {
    public var user: String?
    public var password: String?
    public var token: String?
    /// A `.creds` file: the user JWT and (usually) its nkey seed.
    public var credentialsFile: String?
    /// A file holding a user nkey seed (`SU...`); the public key is derived from it.
    public var nkeySeedFile: String?
    /// PEM file of the certificate authorities to trust for the server's certificate.
    public var tlsCAFile: String?
    /// PEM file of the client certificate (for servers that verify clients); needs `tlsKeyFile`.
    public var tlsCertificateFile: String?
    /// PEM file of the client certificate's private key.
    public var tlsKeyFile: String?

    public init(
        user: String? = nil, password: String? = nil, token: String? = nil, credentialsFile: String? = nil,
        nkeySeedFile: String? = nil, tlsCAFile: String? = nil, tlsCertificateFile: String? = nil,
        tlsKeyFile: String? = nil
    ) {
        self.user = user
        self.password = password
        self.token = token
        self.credentialsFile = credentialsFile
        self.nkeySeedFile = nkeySeedFile
        self.tlsCAFile = tlsCAFile
        self.tlsCertificateFile = tlsCertificateFile
        self.tlsKeyFile = tlsKeyFile
    }

    /// No credentials and no TLS beyond what the URL says.
    public static let none = NATSConnectOptions()

    /// Whether the connection must use TLS (a `tls://` URL asks for it too).
    public var usesTLS: Bool { tlsCAFile != nil || tlsCertificateFile != nil || tlsKeyFile != nil }

    /// The ways of proving identity that are set, by name (at most one may be).
    public var identities: [String] {
        var names: [String] = []
        if user != nil || password != nil { names.append("user and password") }
        if token != nil { names.append("token") }
        if credentialsFile != nil { names.append("credentials file") }
        if nkeySeedFile != nil { names.append("nkey seed file") }
        return names
    }

    /// What is set, never a secret: for logs and errors.
    public var description: String {
        var parts: [String] = []
        if let user { parts.append("user \(user)\(password == nil ? "" : " with a password")") }
        if token != nil { parts.append("a token") }
        if let credentialsFile { parts.append("credentials \(credentialsFile)") }
        if let nkeySeedFile { parts.append("nkey seed \(nkeySeedFile)") }
        if let tlsCAFile { parts.append("TLS CA \(tlsCAFile)") }
        if let tlsCertificateFile { parts.append("TLS client certificate \(tlsCertificateFile)") }
        return parts.isEmpty ? "no credentials" : parts.joined(separator: ", ")
    }

    /// Whether the URL (or one server of a comma-separated list) carries credentials (`nats://user:pass@host`).
    public static func urlHasCredentials(_ url: String) -> Bool {
        url.split(separator: ",").contains { server in
            let afterScheme = server.range(of: "://").map { server[$0.upperBound...] } ?? server[...]
            let authority = afterScheme.prefix { $0 != "/" }
            return authority.contains("@")
        }
    }
}
