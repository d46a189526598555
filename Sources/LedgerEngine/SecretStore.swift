import Foundation
import LedgerCore

/// Where `{{secrets.NAME}}` values come from when a step executes: the secrets file (`--secrets FILE`, a JSON object
/// of names to string values), else the environment variable `LEDGERFLOW_SECRET_<NAME>` (the name in capitals).
/// Values are never logged, appended or stored in a read model.
public struct SecretStore: Sendable {
    let values: [String: String]
    let environment: [String: String]

    /// A problem with the secrets file, said so a person can fix it (never quoting a value).
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// `values`, and `environment` (the process's when nil) for `LEDGERFLOW_SECRET_<NAME>`.
    public init(values: [String: String] = [:], environment: [String: String]? = nil) {
        self.values = values
        self.environment = (environment ?? ProcessInfo.processInfo.environment).filter {
            $0.key.hasPrefix(Self.environmentPrefix)
        }
    }

    public static let environmentPrefix = "LEDGERFLOW_SECRET_"

    /// Reads the secrets file: `{"crm_token": "…", …}`.
    public static func load(file: String) throws -> SecretStore {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw Problem(description: "cannot read the secrets file \(file): \(error.localizedDescription)")
        }
        guard let object = try? JSONDecoder().decode([String: String].self, from: data) else {
            throw Problem(
                description:
                    "the secrets file \(file) must be one JSON object of names to string values, e.g. {\"crm_token\": \"...\"}"
            )
        }
        for name in object.keys where !SecretReferences.isValidName(name) {
            throw Problem(
                description:
                    "the secrets file \(file) names \"\(name.prefix(64))\": a secret's name is 1 to 64 letters, digits and _"
            )
        }
        return SecretStore(values: object)
    }

    /// The value of secret `name`, or nil when neither the file nor the environment sets it.
    public func value(_ name: String) -> String? {
        values[name] ?? environment[Self.environmentPrefix + name.uppercased()]
    }
}
