import Foundation
public import LedgerCore
import Synchronization

/// Roles nest: an admin may do what an operator may, an operator what a viewer may.
public enum Role: String, Codable, Sendable, Comparable, CaseIterable {
    case viewer, `operator`, admin

    var rank: Int {
        switch self {
        case .viewer: return 0
        case .`operator`: return 1
        case .admin: return 2
        }
    }
    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

/// Who a request acts as: a known token's subject and role (what the log records as the actor).
public struct TokenGrant: Sendable, Equatable {
    /// The token's public id (`tok_…`), never the token itself.
    public var id: String
    public var subject: String
    public var role: Role

    public init(id: String, subject: String, role: Role) {
        self.id = id
        self.subject = subject
        self.role = role
    }

    /// The actor the log records for what this grant does.
    public var actor: ActorRef { ActorRef(type: role.rawValue, id: subject) }
}

/// A token given in plain text to the process itself (`--admin-token`, the one `ledgerflow dev` prints, the tests'):
/// hashed on arrival and kept only as its hash.
public struct AccessToken: Sendable {
    public var token: String
    public var subject: String
    public var role: Role

    public init(token: String, subject: String, role: Role) {
        self.token = token
        self.subject = subject
        self.role = role
    }
}

/// One line of the tokens file: a token's id, SHA-256 hash, subject and role; the token itself is never stored.
public struct TokenRecord: Codable, Sendable, Equatable {
    public var id: String
    /// `sha256:<hex>` of the token.
    public var hash: String
    public var subject: String
    public var role: Role
    public var created_at: String
    public var created_by: String?

    public init(id: String, hash: String, subject: String, role: Role, created_at: String, created_by: String?) {
        self.id = id
        self.hash = hash
        self.subject = subject
        self.role = role
        self.created_at = created_at
        self.created_by = created_by
    }
}

/// The tokens file (`<data-dir>/tokens.json` unless `--tokens-file`): `{"tokens": [TokenRecord]}`, written by
/// `ledgerflow tokens create|revoke` and read by `serve` and `dev`, which pick up changes within a second.
public enum TokenFile {
    public struct Contents: Codable, Sendable, Equatable {
        public var tokens: [TokenRecord]
        public init(tokens: [TokenRecord]) { self.tokens = tokens }
    }

    /// A problem with the tokens file, said so a person can fix it.
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// The file's tokens; an absent file has none.
    public static func read(_ path: String) throws -> [TokenRecord] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Problem(description: "cannot read the tokens file \(path): \(error.localizedDescription)")
        }
        let contents: Contents
        do {
            contents = try JSONDecoder().decode(Contents.self, from: data)
        } catch {
            throw Problem(
                description:
                    "the tokens file \(path) is not {\"tokens\": [{id, hash, subject, role, created_at}]} (\(error)); tokens are created with `ledgerflow tokens create` and never stored in plain text"
            )
        }
        for record in contents.tokens where Digest(hash: record.hash) == nil {
            throw Problem(
                description:
                    "token \(record.id) in \(path) has no valid hash (\"sha256:\" and 64 hex digits); revoke it and create a new one"
            )
        }
        return contents.tokens
    }

    /// Runs `body` holding an exclusive lock on `<path>.lock`, so two `ledgerflow tokens` commands never undo each
    /// other's change (each reads, changes and writes the file under the lock).
    public static func withLock<R>(_ path: String, _ body: () async throws -> R) async throws -> R {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let descriptor = open("\(path).lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw Problem(description: "cannot open \(path).lock: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        // Never waits in the kernel (no thread is blocked): tries again for up to ten seconds.
        let deadline = ContinuousClock.now + .seconds(10)
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK, ContinuousClock.now < deadline else {
                throw Problem(
                    description:
                        "cannot lock \(path).lock (another `ledgerflow tokens` holds it, or \(String(cString: strerror(errno)))); try again"
                )
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        defer { flock(descriptor, LOCK_UN) }
        return try await body()
    }

    /// Replaces the file in one rename, readable by its owner only.
    public static func write(_ tokens: [TokenRecord], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let data = try encoder.encode(Contents(tokens: tokens))
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let temporary = "\(path).tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600])
        else { throw Problem(description: "cannot write \(temporary): check the directory's permissions") }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw Problem(description: "cannot replace \(path): \(reason)")
        }
    }

    /// A fresh token (`lf_` and 43 base-62 characters, about 256 bits from the system's random source) and the
    /// record that stands for it.
    public static func mint(
        subject: String, role: Role, createdBy: String?, at time: String
    ) -> (
        token: String, record: TokenRecord
    ) {
        let token = AccessTokens.generate()
        var rng = SystemRandomNumberGenerator()
        let id = "tok_" + String((0..<10).map { _ in AccessTokens.alphabet.randomElement(using: &rng)! })
        return (
            token,
            TokenRecord(
                id: id, hash: Digest(token: token).text, subject: subject, role: role, created_at: time,
                created_by: createdBy)
        )
    }

    /// The SHA-256 of a token: a high-entropy random token needs no slow hash, so a request pays one SHA-256.
    struct Digest: Hashable {
        let bytes: [UInt8]

        init(token: String) { bytes = SHA256.hash(Array(token.utf8)) }

        init?(hash: String) {
            guard hash.hasPrefix("sha256:") else { return nil }
            let hex = Array(hash.utf8.dropFirst(7))
            guard hex.count == 64 else { return nil }
            var out: [UInt8] = []
            out.reserveCapacity(32)
            for i in stride(from: 0, to: 64, by: 2) {
                guard let high = Self.nibble(hex[i]), let low = Self.nibble(hex[i + 1]) else { return nil }
                out.append(high << 4 | low)
            }
            bytes = out
        }

        var text: String { SHA256.hexDigits(bytes, prefix: "sha256:") }

        static func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }

        /// Compares every byte whatever the first difference, so the time taken says nothing about the hash.
        func constantTimeEquals(_ other: Digest) -> Bool {
            guard bytes.count == other.bytes.count else { return false }
            var difference: UInt8 = 0
            for i in bytes.indices { difference |= bytes[i] ^ other.bytes[i] }
            return difference == 0
        }
    }
}

/// The tokens the API (and `automation.flow.run`) accepts: tokens given to the process, and the tokens file,
/// read again when it changes (checked at most once a second), so a revoked token stops working without a restart.
public final class AccessTokens: Sendable {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

    struct Entry {
        let digest: TokenFile.Digest
        let grant: TokenGrant
    }
    struct State {
        var fromFile: [TokenFile.Digest: Entry] = [:]
        var lastCheck: ContinuousClock.Instant?
        var stamp: FileStamp?
        var problem: String?
    }
    struct FileStamp: Equatable {
        var modified: Int
        var modifiedNanos: Int
        var size: Int
        var inode: UInt64
    }

    let fixed: [TokenFile.Digest: Entry]
    public let file: String?
    let state: Mutex<State>

    /// `tokens` in memory (hashed here) and, when given, the tokens file.
    public init(_ tokens: [AccessToken], file: String? = nil) throws {
        var fixed: [TokenFile.Digest: Entry] = [:]
        for (index, token) in tokens.enumerated() {
            let digest = TokenFile.Digest(token: token.token)
            fixed[digest] = Entry(
                digest: digest, grant: TokenGrant(id: "process-\(index)", subject: token.subject, role: token.role))
        }
        self.fixed = fixed
        self.file = file
        self.state = Mutex(State())
        if let file {
            let (entries, stamp) = try Self.load(file)
            state.withLock {
                $0.fromFile = entries
                $0.stamp = stamp
                $0.lastCheck = .now
            }
        }
    }

    /// How many tokens are known (the process's and the file's).
    public var count: Int { fixed.count + state.withLock { $0.fromFile.count } }

    /// The last problem reading the tokens file again (none of its tokens is accepted until it is fixed), or nil.
    public var fileProblem: String? { state.withLock { $0.problem } }

    /// The grant of `token`, or nil when it is not known.
    public func grant(for token: String) -> TokenGrant? {
        let digest = TokenFile.Digest(token: token)
        if let entry = fixed[digest], entry.digest.constantTimeEquals(digest) { return entry.grant }
        refreshIfDue()
        guard let entry = state.withLock({ $0.fromFile[digest] }), entry.digest.constantTimeEquals(digest) else {
            return nil
        }
        return entry.grant
    }

    /// Reads the file again when it changed since the last look, at most once a second.
    public func refreshIfDue() {
        guard let file else { return }
        let now = ContinuousClock.now
        let due = state.withLock { state -> Bool in
            if let last = state.lastCheck, now - last < .seconds(1) { return false }
            state.lastCheck = now
            return true
        }
        guard due else { return }
        let stamp = Self.stamp(file)
        guard stamp != state.withLock({ $0.stamp }) else { return }
        do {
            let (entries, stamp) = try Self.load(file)
            state.withLock {
                $0.fromFile = entries
                $0.stamp = stamp
                $0.problem = nil
            }
        } catch {
            // Fail closed: a file that cannot be read grants nothing (a revocation written by hand must not be
            // undone by a typo elsewhere in the file). The tokens given to the process still work.
            state.withLock {
                $0.fromFile = [:]
                $0.problem = "\(error)"
                $0.stamp = stamp
            }
        }
    }

    static func load(_ file: String) throws -> ([TokenFile.Digest: Entry], FileStamp?) {
        let stamp = Self.stamp(file)
        var entries: [TokenFile.Digest: Entry] = [:]
        for record in try TokenFile.read(file) {
            guard let digest = TokenFile.Digest(hash: record.hash) else { continue }
            entries[digest] = Entry(
                digest: digest, grant: TokenGrant(id: record.id, subject: record.subject, role: record.role))
        }
        return (entries, stamp)
    }

    static func stamp(_ file: String) -> FileStamp? {
        var info = stat()
        guard stat(file, &info) == 0 else { return nil }
        return FileStamp(
            modified: Int(info.st_mtim.tv_sec), modifiedNanos: Int(info.st_mtim.tv_nsec), size: Int(info.st_size),
            inode: UInt64(info.st_ino))
    }

    /// A fresh random token: `lf_` and 43 base-62 characters (about 256 bits).
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        return "lf_" + String((0..<43).map { _ in alphabet.randomElement(using: &rng)! })
    }

    /// The token of an `Authorization: Bearer <token>` header, or nil.
    public static func bearer(_ header: String?) -> String? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let token = header.dropFirst(7).drop { $0 == " " }
        return token.isEmpty ? nil : String(token)
    }
}
