import Foundation

/// Where a definition's side-effecting steps send, checked at registration: the scheme, host and port of an
/// `http.request` URL and the whole subject of an `emit` are literal text in the definition, so nothing a trigger
/// or a chat user sends (rendered through `{{...}}`) can choose the target. Templates stay allowed in a URL's path
/// and query. The engine checks the rendered target again at run time.
public enum OutboundTargets {
    /// Every problem of the definition's `http.request` and `emit` steps and compensations.
    public static func problems(in definition: FlowDefinition) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        for (i, step) in definition.steps.enumerated() {
            problems += self.problems(action: step.action, with: step.with, at: "steps[\(i)].with")
            if let compensation = step.compensate {
                problems += self.problems(
                    action: compensation.action, with: compensation.with, at: "steps[\(i)].compensate.with")
            }
        }
        return problems
    }

    static func problems(action: String, with: JSONValue?, at: String) -> [ValidationProblem] {
        switch action {
        case "http.request":
            guard let url = with?["url"] else { return [] }
            return urlProblem(url).map { [ValidationProblem(path: "\(at).url", message: $0)] } ?? []
        case "emit":
            guard let subject = with?["subject"] else { return [] }
            return subjectProblem(subject).map { [ValidationProblem(path: "\(at).subject", message: $0)] } ?? []
        default:
            return []
        }
    }

    /// Why an `http.request` URL does not name its target literally, or nil.
    public static func urlProblem(_ value: JSONValue) -> String? {
        guard case .string(let url) = value else {
            return "must be a string: the URL to call, e.g. \"https://api.example.com/contacts\""
        }
        let literal = url.range(of: "{{").map { url[..<$0.lowerBound] } ?? Substring(url)
        let lower = literal.lowercased()
        let schemeLength: Int
        if lower.hasPrefix("https://") {
            schemeLength = 8
        } else if lower.hasPrefix("http://") {
            schemeLength = 7
        } else {
            return literal.count < url.count && !lower.contains("://")
                ? "the scheme and host must be written out, not come from a template: start with http:// or https:// and the host, "
                    + "e.g. \"https://api.example.com/items/{{input.id}}\""
                : "must start with http:// or https://"
        }
        let rest = literal.dropFirst(schemeLength)
        guard let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) else {
            if literal.count < url.count {
                return
                    "the host and port must be written out: a template may only follow the host in the path or query, "
                    + "e.g. \"https://api.example.com/items/{{input.id}}\" (end the host with \"/\")"
            }
            return authorityProblem(rest)
        }
        return authorityProblem(rest[..<end])
    }

    static func authorityProblem(_ authority: Substring) -> String? {
        if authority.isEmpty { return "names no host: write it out, e.g. \"https://api.example.com/\"" }
        if authority.contains("@") {
            return
                "holds credentials before the host (user@host); send them in with.headers (e.g. Authorization) instead"
        }
        return nil
    }

    /// Why an `emit` subject is not a literal subject emit may publish on, or nil.
    public static func subjectProblem(_ value: JSONValue) -> String? {
        guard case .string(let subject) = value else {
            return "must be a string: the subject to publish on, e.g. \"orders.shipped\""
        }
        if subject.contains("{{") {
            return "must be written out, not come from a template: a step's subject is fixed by the definition, "
                + "so no input can choose where the event goes (put varying values in with.data)"
        }
        return EmitSubjectPolicy.refusal(subject, checkInbound: false)
    }

    /// The marker that replaces header values in what a run records.
    public static let redacted: JSONValue = "[redacted]"

    /// `request` with every value of its `headers` object replaced by "[redacted]" (names kept): what a dry run
    /// records as its simulated answer, since headers carry credentials (Authorization, API keys).
    public static func redactingHeaders(_ request: JSONValue) -> JSONValue {
        guard case .object(var fields) = request, let headers = fields["headers"] else { return request }
        if case .object(let named) = headers {
            fields["headers"] = .object(named.mapValues { _ in redacted })
        } else {
            fields["headers"] = redacted
        }
        return .object(fields)
    }
}
