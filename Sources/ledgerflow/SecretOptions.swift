import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// `--secrets FILE` and `--disable-action`, for `serve` and `dev`.
struct SecretOptions: ParsableArguments {
    @Option(
        name: .customLong("secrets"),
        help:
            "JSON file of secrets steps reference as {{secrets.NAME}} (env LEDGERFLOW_SECRETS_FILE); LEDGERFLOW_SECRET_<NAME> also sets one."
    )
    var secretsFile: String?

    @Option(
        name: .customLong("disable-action"),
        help:
            "An action flows may not use (repeatable): flows whose current version uses it are marked broken at start.")
    var disabledActions: [String] = []

    func apply(to configuration: inout EngineConfiguration) throws {
        if let file = secretsFile ?? ProcessInfo.processInfo.environment["LEDGERFLOW_SECRETS_FILE"] {
            do {
                configuration.secrets = try SecretStore.load(file: file)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        for name in disabledActions where ActionRegistry.builtIn[name] == nil {
            throw ValidationError(
                "--disable-action \(name) is not an action; the actions are \(ActionRegistry.builtIn.actions.keys.sorted().joined(separator: ", "))"
            )
        }
        configuration.registry = ActionRegistry.builtIn.without(disabledActions)
    }
}
