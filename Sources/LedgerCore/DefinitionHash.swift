import Foundation

/// The hash a run is pinned to: SHA-256 of the definition's canonical JSON.
public enum DefinitionHash {
    public static func of(_ definition: FlowDefinition) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(definition)) ?? Data()
        return "sha256:" + SHA256.hash(Array(data)).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}
