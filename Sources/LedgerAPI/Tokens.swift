import Foundation

/// Roles nest: an admin may do what an operator may, an operator what a viewer may.
public enum Role: String, Codable, Sendable, Comparable {
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

/// A bearer token: its subject (recorded as the actor in the log) and role.
public struct TokenGrant: Codable, Sendable, Equatable {
    public var token: String
    public var subject: String
    public var role: Role
    public init(token: String, subject: String, role: Role) {
        self.token = token
        self.subject = subject
        self.role = role
    }
}

/// The tokens the API accepts.
public struct TokenStore: Sendable {
    let grants: [String: TokenGrant]

    public init(_ grants: [TokenGrant]) {
        self.grants = Dictionary(grants.map { ($0.token, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// Reads `[{"token", "subject", "role"}]` from a JSON file.
    public static func load(file: String) throws -> [TokenGrant] {
        try JSONDecoder().decode([TokenGrant].self, from: Data(contentsOf: URL(fileURLWithPath: file)))
    }

    public func grant(for token: String) -> TokenGrant? { grants[token] }

    /// A fresh random token.
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        return "lf_"
            + (0..<32).map { _ in String("abcdefghijklmnopqrstuvwxyz0123456789".randomElement(using: &rng)!) }.joined()
    }
}
