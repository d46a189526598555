/// A flow's `output` read into its parts: what the run renders when every step is done (`text`, `data` and any other
/// field), the immediate acknowledgement (`ack`), and where the final output is delivered (`webhook`).
public struct FlowOutputSpec: Sendable, Equatable {
    /// `output` without `ack` and `webhook`: rendered at the end of the run, recorded in `FlowRunSucceeded`.
    public var final: JSONValue?
    /// The template of the acknowledgement sent as soon as the run starts.
    public var ack: String?
    /// Where the final output is delivered, when the flow says so.
    public var webhook: WebhookSpec?

    public init(_ output: JSONValue?) {
        guard case .object(var fields)? = output else {
            self.final = output
            return
        }
        ack = fields.removeValue(forKey: Self.ackKey)?.stringValue
        webhook = fields.removeValue(forKey: Self.webhookKey).flatMap(WebhookSpec.init)
        final = .object(fields)
    }

    static let ackKey = "ack"
    static let webhookKey = "webhook"

    /// `output` without its `webhook` (whose secret reference is checked here, not as a template).
    static func withoutWebhook(_ output: JSONValue?) -> JSONValue? {
        guard case .object(var fields)? = output else { return output }
        fields[webhookKey] = nil
        return .object(fields)
    }

    /// Every problem of `output.ack` and `output.webhook`, at registration.
    static func problems(_ output: JSONValue?, inputs: Set<String>?, _ problem: (String, String) -> Void) {
        guard case .object(let fields)? = output else { return }
        if let ack = fields[ackKey] {
            checkAck(ack, inputs: inputs, problem)
        }
        if let webhook = fields[webhookKey] {
            WebhookSpec.check(webhook, at: "output.\(webhookKey)", problem)
        }
    }

    static func checkAck(_ ack: JSONValue, inputs: Set<String>?, _ problem: (String, String) -> Void) {
        let at = "output.\(ackKey)"
        guard case .string(let text) = ack else {
            problem(at, "must be a string: the text sent as soon as the run starts, e.g. \"Estoy en ello\"")
            return
        }
        let references: [(path: String, reference: String)]
        do {
            references = try Template.references(in: .string(text), at: at)
        } catch {
            problem(at, "bad template: \(error.message)")
            return
        }
        for (_, reference) in references {
            if reference == "steps" || reference.hasPrefix("steps.") {
                problem(
                    at,
                    "{{\(reference)}}: the acknowledgement is sent as soon as the run starts, before any step ran; it may reference trigger, input and run"
                )
            } else if !reference.hasPrefix(SecretReferences.root + ".") {
                // Secrets are reported by `SecretReferences.problems`.
                FlowValidator.checkReference(
                    reference, at: at, allowedSteps: [], ids: [], inputs: inputs, problem)
            }
        }
    }
}

/// `output.webhook`: `{"url": "https://...", "secret": "{{secrets.NAME}}", "retry": {...}, "timeout_sec": 10}`.
/// The final output's `FlowOutputProduced` is `POST`ed to `url`, signed with the secret.
public struct WebhookSpec: Sendable, Equatable {
    /// The literal http(s) URL.
    public var url: String
    /// The name of the secret the body is signed with (`{{secrets.NAME}}` in the definition).
    public var secret: String
    /// How deliveries are retried (default `WebhookSpec.defaultRetry`).
    public var retry: RetryPolicy?
    /// How long one delivery attempt may take (default 10 s).
    public var timeout_sec: Double?

    public static let defaultRetry = RetryPolicy(
        max_attempts: 5, backoff: .exponential, initial_ms: 1000, max_ms: 60_000, jitter: true)
    public static let defaultTimeoutSeconds = 10.0
    public static let maxTimeoutSeconds = 120.0
    public static let maxURLBytes = 2048
    static let fields: Set<String> = ["url", "secret", "retry", "timeout_sec"]

    /// Reads a webhook from a definition that validated; nil for anything else.
    init?(_ value: JSONValue) {
        guard let url = value["url"]?.stringValue, let secret = value["secret"]?.stringValue.flatMap(Self.secretName)
        else { return nil }
        self.url = url
        self.secret = secret
        if let retry = value["retry"], retry != .null {
            self.retry = try? JSONTree.decode(RetryPolicy.self, from: retry)
        }
        timeout_sec = value["timeout_sec"]?.numberValue
    }

    /// How long one attempt may take, within (0, `maxTimeoutSeconds`] whatever the stored definition says.
    public var timeoutSeconds: Double {
        guard let seconds = timeout_sec, seconds.isFinite, seconds > 0 else { return Self.defaultTimeoutSeconds }
        return min(seconds, Self.maxTimeoutSeconds)
    }

    /// The secret's name in `{{secrets.NAME}}` (the whole value), or nil.
    static func secretName(_ text: String) -> String? {
        guard let pieces = try? Template.parse(text), pieces.count == 1, case .reference(let reference) = pieces[0],
            reference.hasPrefix(SecretReferences.root + ".")
        else { return nil }
        let name = reference.dropFirst(SecretReferences.root.count + 1)
        return SecretReferences.isValidName(name) ? String(name) : nil
    }

    static func check(_ value: JSONValue, at: String, _ problem: (String, String) -> Void) {
        guard case .object(let fields) = value else {
            problem(at, "must be an object: {\"url\": \"https://...\", \"secret\": \"{{secrets.NAME}}\"}")
            return
        }
        for key in fields.keys.sorted() where !Self.fields.contains(key) {
            problem("\(at).\(key)", "unknown field; a webhook takes \(Self.fields.sorted().joined(separator: ", "))")
        }
        switch fields["url"] {
        case .string(let url)?:
            if url.utf8.count > maxURLBytes {
                problem("\(at).url", "is \(url.utf8.count) bytes; a webhook URL may be at most \(maxURLBytes) bytes")
            } else if url.contains("{{") {
                problem("\(at).url", "must be written out in full (no templates): the URL the output is posted to")
            } else if let why = OutboundTargets.urlProblem(.string(url)) {
                problem("\(at).url", why)
            }
        case nil:
            problem("\(at).url", "is required: the http:// or https:// URL the final output is posted to")
        case .some:
            problem("\(at).url", "must be a string: the http:// or https:// URL the final output is posted to")
        }
        if fields["secret"]?.stringValue.flatMap(secretName) == nil {
            problem(
                "\(at).secret",
                "is required: a reference to the secret the body is signed with, written \"{{secrets.NAME}}\" (the name: 1 to 64 letters, digits and _)"
            )
        }
        if let retry = fields["retry"], retry != .null {
            do {
                FlowValidator.checkRetry(try JSONTree.decode(RetryPolicy.self, from: retry), at: "\(at).retry", problem)
            } catch {
                problem(
                    "\(at).retry", "must be a retry policy like a step's: {\"max_attempts\": 5, \"initial_ms\": 1000}")
            }
        }
        if let timeout = fields["timeout_sec"], timeout != .null {
            guard let seconds = timeout.numberValue, seconds.isFinite, seconds > 0, seconds <= maxTimeoutSeconds else {
                problem(
                    "\(at).timeout_sec",
                    "must be a number of seconds, more than 0 and at most \(Int(maxTimeoutSeconds))")
                return
            }
        }
    }
}
