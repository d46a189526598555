import Foundation

/// `{{secrets.NAME}}`: a credential a step needs, referenced by name in the definition and resolved only when the
/// step executes (from `--secrets FILE` or `LEDGERFLOW_SECRET_<NAME>`). The log and the read models hold the
/// reference, never the value: rendering leaves it in place, and whatever a step's answer echoes of a value is
/// redacted before it is recorded.
public enum SecretReferences {
    public static let root = "secrets"
    public static let redacted = "[redacted]"

    /// A secret's name: 1 to 64 letters, digits and `_`.
    public static func isValidName(_ name: some StringProtocol) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { s in
                (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "_"
            }
    }

    /// Where a definition may reference secrets: the headers of an `http.request` (the step's or its
    /// compensation's). Anywhere else the value would end up in the log (a transform's output, a command's data).
    public static func problems(in definition: FlowDefinition) -> [ValidationProblem] {
        var out: [ValidationProblem] = []
        func check(_ value: JSONValue?, at path: String, headersAllowed: Bool) {
            guard let value, let found = try? Template.references(in: value, at: path) else { return }
            let secretPlaces = Set(found.filter { $0.reference.hasPrefix(root + ".") }.map(\.path))
            for (place, reference) in found where secretPlaces.contains(place) && !reference.hasPrefix(root + ".") {
                out.append(
                    ValidationProblem(
                        path: place,
                        message:
                            "{{\(reference)}}: a header that holds a secret may hold only text and secrets, no run data (which could name another secret)"
                    ))
            }
            for (place, reference) in found where reference.hasPrefix(root + ".") {
                let inHeaders = place.hasPrefix("\(path).headers.")
                if !(headersAllowed && inHeaders) {
                    out.append(
                        ValidationProblem(
                            path: place,
                            message:
                                "{{\(reference)}}: secrets may only be used in the headers of an http.request (anywhere else the value would be recorded in the log)"
                        ))
                }
            }
        }
        for (i, step) in definition.steps.enumerated() {
            check(step.with, at: "steps[\(i)].with", headersAllowed: step.action == "http.request")
            if let compensate = step.compensate {
                check(
                    compensate.with, at: "steps[\(i)].compensate.with",
                    headersAllowed: compensate.action == "http.request")
            }
            if let when = step.when, when.contains("{{\(root).") || when.contains("{{ \(root).") {
                out.append(
                    ValidationProblem(path: "steps[\(i)].when", message: "secrets may not be used in conditions"))
            }
        }
        // The webhook's secret is checked with the webhook (`WebhookSpec`): it signs, and is never rendered.
        check(FlowOutputSpec.withoutWebhook(definition.output), at: "output", headersAllowed: false)
        return out
    }

    /// The names of the headers in a step's `with` (its definition, not the rendered request) whose value
    /// references a secret.
    public static func headerNames(in with: JSONValue?) -> [String] {
        guard case .object(let headers)? = with?["headers"] else { return [] }
        return headers.compactMap { name, value in
            guard let text = value.stringValue, references(text) else { return nil }
            return name
        }.sorted()
    }

    /// Whether a template string references a secret.
    static func references(_ text: String) -> Bool {
        guard let pieces = try? Template.parse(text) else { return false }
        return pieces.contains { piece in
            if case .reference(let reference) = piece { return reference.hasPrefix(root + ".") }
            return false
        }
    }

    /// A secret that is not set.
    public struct Missing: Error, Sendable, Equatable {
        public var name: String
    }

    /// `value` with every `{{secrets.NAME}}` in its strings replaced by the secret's value, and the values used.
    public static func resolve(
        _ value: JSONValue, _ lookup: (String) -> String?
    ) throws(Missing) -> (value: JSONValue, used: [String]) {
        var used: [String] = []
        func walk(_ value: JSONValue) throws(Missing) -> JSONValue {
            switch value {
            case .string(let text):
                guard text.contains("{{") else { return value }
                var out = ""
                var rest = Substring(text)
                while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
                    out += rest[..<open.lowerBound]
                    let reference = rest[open.upperBound..<close.lowerBound].trimmingWhitespace()
                    if reference.hasPrefix(root + ".") {
                        let name = String(reference.dropFirst(root.count + 1))
                        guard let secret = lookup(name) else { throw Missing(name: name) }
                        used.append(secret)
                        out += secret
                    } else {
                        out += rest[open.lowerBound..<close.upperBound]
                    }
                    rest = rest[close.upperBound...]
                }
                out += rest
                return .string(out)
            case .array(let items):
                var out: [JSONValue] = []
                for item in items { out.append(try walk(item)) }
                return .array(out)
            case .object(let fields):
                var out: [String: JSONValue] = [:]
                for (key, item) in fields { out[key] = try walk(item) }
                return .object(out)
            default:
                return value
            }
        }
        let resolved = try walk(value)
        return (resolved, used)
    }

    /// `value` with every occurrence of the `secrets` (in keys and strings) replaced by `[redacted]`.
    public static func redact(_ value: JSONValue, _ secrets: [String]) -> JSONValue {
        let secrets = secrets.filter { !$0.isEmpty }
        guard !secrets.isEmpty else { return value }
        func text(_ s: String) -> String {
            var s = s
            for secret in secrets where s.contains(secret) { s = s.replacingAll(secret, with: redacted) }
            return s
        }
        func walk(_ value: JSONValue) -> JSONValue {
            switch value {
            case .string(let s): return .string(text(s))
            case .array(let items): return .array(items.map(walk))
            case .object(let fields):
                var out: [String: JSONValue] = [:]
                for (key, item) in fields { out[text(key)] = walk(item) }
                return .object(out)
            default: return value
            }
        }
        return walk(value)
    }

    /// `message` with every occurrence of the `secrets` replaced by `[redacted]`.
    public static func redact(_ message: String, _ secrets: [String]) -> String {
        var s = message
        for secret in secrets where !secret.isEmpty && s.contains(secret) { s = s.replacingAll(secret, with: redacted) }
        return s
    }
}

extension String {
    /// Every occurrence of `target` replaced (without Foundation).
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        out += rest
        return out
    }
}
