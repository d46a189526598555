import Foundation
import LedgerCore
import Testing

/// Where `http.request` and `emit` may send (issue 5): the address and subject policies, the definition checks
/// and the dry-run redaction, all pure.
@Suite struct OutboundPolicyTests {
    // MARK: Address literals

    @Test(arguments: [
        ("127.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"), ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0", "0.0.0.0"), ("[::1]", "::1"), ("::1", "::1"), ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("[0:0:0:0:0:0:0:1]", "::1"), ("fd00:ec2::254", "fd00:ec2::254"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
    ])
    func addressLiteralsInEveryFormParse(text: String, canonical: String) throws {
        let address = try #require(IPAddress.parse(text), "\(text)")
        #expect(address.description == canonical)
    }

    @Test(arguments: [
        "example.com", "localhost", "1.2.3.999", "256.1", "1.2.3.4.5", "::g", "fe80::1%eth0", "[::1", "", "1..2",
        "0x1.0x2.0x3.0x100",
    ])
    func whatIsNotAnAddressDoesNotParse(text: String) {
        #expect(IPAddress.parse(text) == nil, "\(text)")
    }

    @Test func hostsEndingInANumberAreTreatedAsAddresses() {
        #expect(IPAddress.looksNumeric("1.2.3.999"))
        #expect(IPAddress.looksNumeric("foo.0x7f"))
        #expect(IPAddress.looksNumeric("99999999999999999999999999999999999999"))
        #expect(!IPAddress.looksNumeric("example.com"))
        #expect(!IPAddress.looksNumeric("api-2.example.com"))
    }

    @Test(arguments: [
        "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1",
        "100.100.100.200", "0.0.0.0", "0.1.2.3", "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.0.192",
        "198.18.0.1",
        "::", "::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "fc00::1", "fd00:ec2::254", "fe80::1", "febf::1", "fec0::1", "ff02::1", "::127.0.0.1", "2001:db8::1", "100::1",
    ])
    func specialAddressesAreRecognised(text: String) throws {
        let address = try #require(IPAddress.parse(text))
        #expect(address.specialUse != nil, "\(text) should be special")
    }

    @Test(arguments: [
        "8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "169.253.1.1", "2606:4700::1111",
        "::ffff:8.8.8.8", "2001:4860::8888",
    ])
    func publicAddressesAreNot(text: String) throws {
        let address = try #require(IPAddress.parse(text))
        #expect(address.specialUse == nil, "\(text) is public: \(address.specialUse ?? "")")
    }

    // MARK: Allowlist

    @Test func allowEntriesParseInEveryForm() throws {
        let entries = try HTTPAllowEntry.parseList(
            " localhost:8080, API.Example.com. ,10.0.0.0/8,[::1]:9000, ::1, 127.0.0.1:80, [fd00::]/8:443 ,")
        #expect(
            entries.map(\.description) == [
                "localhost:8080", "api.example.com", "10.0.0.0/8", "[::1]:9000", "[::1]", "127.0.0.1:80",
                "fd00::/8:443",
            ])
    }

    @Test(arguments: [
        "localhost:0", "localhost:65536", "localhost:http", "host:-1", "10.0.0.0/33", "10.0.0.0/x", "bad host",
        "ex ample.com", "[::1",
        "[::1]x", "a/8", "1.2.3.999", "évil.com", "host:80:80", String(repeating: "a", count: 400), "h\u{0}st", ":80",
    ])
    func brokenAllowEntriesAreRefusedWithTheExpectedForm(text: String) {
        #expect(throws: HTTPAllowEntry.ParseError.self) { try HTTPAllowEntry.parse(text) }
        do {
            _ = try HTTPAllowEntry.parse(text)
        } catch {
            #expect(error.description.contains("HOST[:PORT]"))
        }
    }

    func ip(_ text: String) -> IPAddress { IPAddress.parse(text)! }

    @Test func loopbackPrivateLinkLocalAndMetadataAreRefusedByDefault() {
        let policy = OutboundPolicy()
        for (host, address) in [
            ("localhost", "127.0.0.1"), ("127.0.0.1", "127.0.0.1"), ("169.254.169.254", "169.254.169.254"),
            ("internal.corp", "10.0.0.7"),
            ("v6.local", "::1"), ("mapped", "::ffff:127.0.0.1"), ("metadata.google.internal", "169.254.169.254"),
            ("ula", "fd00:ec2::254"),
        ] {
            let why = policy.refusal(host: host, port: 80, addresses: [ip(address)])
            #expect(why != nil, "\(host) → \(address) must be refused")
            #expect(
                why?.contains("--http-allow") == true && why?.contains("LEDGERFLOW_HTTP_ALLOW") == true,
                "says how to allow it")
            #expect(why?.contains(ip(address).description) == true, "names the address")
        }
        #expect(policy.refusal(host: "example.com", port: 443, addresses: [ip("93.184.216.34")]) == nil)
        // One private record among public ones is enough to refuse (DNS may answer either).
        #expect(
            policy.refusal(host: "mixed.example", port: 443, addresses: [ip("93.184.216.34"), ip("127.0.0.1")]) != nil)
    }

    @Test func theAllowlistPermitsByNameAddressNetworkAndPort() throws {
        let policy = OutboundPolicy(
            httpAllow: try HTTPAllowEntry.parseList("localhost:8080,10.1.0.0/16,[::1]:9000,192.168.1.5"))
        #expect(policy.refusal(host: "localhost", port: 8080, addresses: [ip("127.0.0.1")]) == nil)
        #expect(policy.refusal(host: "localhost", port: 8081, addresses: [ip("127.0.0.1")]) != nil, "another port")
        #expect(policy.refusal(host: "svc.internal", port: 80, addresses: [ip("10.1.200.3")]) == nil)
        #expect(
            policy.refusal(host: "svc.internal", port: 80, addresses: [ip("10.2.0.1")]) != nil, "outside the network")
        #expect(policy.refusal(host: "::1", port: 9000, addresses: [ip("::1")]) == nil)
        #expect(policy.refusal(host: "::1", port: 9001, addresses: [ip("::1")]) != nil)
        #expect(
            policy.refusal(host: "192.168.1.5", port: 1234, addresses: [ip("::ffff:192.168.1.5")]) == nil,
            "mapped form of an allowed address")
        #expect(policy.refusal(host: "other", port: 80, addresses: [ip("169.254.169.254")]) != nil)
        let dev = OutboundPolicy(httpAllow: OutboundPolicy.loopback)
        #expect(dev.refusal(host: "localhost", port: 3000, addresses: [ip("127.0.0.1"), ip("::1")]) == nil)
        #expect(dev.refusal(host: "127.0.0.1", port: 3000, addresses: [ip("127.0.0.1")]) == nil)
        #expect(
            dev.refusal(host: "x", port: 3000, addresses: [ip("127.0.0.2")]) != nil,
            "dev allows 127.0.0.1, ::1 and localhost only")
        #expect(
            dev.refusal(host: "x", port: 80, addresses: [ip("169.254.169.254")]) != nil, "dev still refuses metadata")
    }

    // MARK: emit subjects

    @Test(arguments: [
        "ledger.run.x", "ledger.flow.f", "ledger", "$JS.API.STREAM.LIST", "$KV.bucket.key", "$SYS.REQ.SERVER.PING",
        "$O.store.x", "$G",
        "_INBOX.abc", "_INBOX", "_inbox.x", "a.*", "a.>", ">", "*", "a*b.c", "a..b", ".a", "a.", "", "a b", "a\tb",
        "a\nb", "a\u{0}b",
        "a\u{7f}b", "a\u{200b}b", "assistant.command.issued", "calendar.event.created",
        "calendar.event.anything.deeper",
        "automation.flow.run", String(repeating: "a", count: 257), "calendar.command.schedule_event",
        "calendar.command.other", "notifications.command.send", "automation.output.produced", "discovery.search",
    ])
    func forbiddenSubjectsAreRefusedWithTheRule(subject: String) {
        let why = EmitSubjectPolicy.refusal(subject)
        #expect(why != nil, "\(subject.debugDescription) must be refused")
        #expect((why?.count ?? 0) < 600, "the message stays readable")
    }

    @Test(arguments: [
        "crm.contact.synced", "orders.shipped", "a", "calendar.commands", "automation.output.other",
        "notifications.command.other", "discovery.search.more", "calendar", "ünïcode.ok",
        String(repeating: "a", count: 256),
    ])
    func applicationSubjectsAreAllowed(subject: String) {
        #expect(EmitSubjectPolicy.refusal(subject) == nil, "\(subject)")
    }

    @Test func inboundSubjectsMayBeAllowedButNeverTheLogOrAPIs() {
        #expect(EmitSubjectPolicy.refusal("calendar.event.created", allowed: ["calendar.event.>"]) == nil)
        #expect(EmitSubjectPolicy.refusal("calendar.event.created", allowed: ["calendar.event.updated"]) != nil)
        #expect(EmitSubjectPolicy.refusal("ledger.run.x", allowed: ["ledger.>"]) != nil)
        #expect(EmitSubjectPolicy.refusal("$JS.API.INFO", allowed: [">"]) != nil)
        #expect(EmitSubjectPolicy.refusal("assistant.command.issued")?.contains("--emit-allow") == true)
        #expect(EmitSubjectPolicy.refusal("ledger.run.x")?.contains("ledger.>") == true)
        #expect(EmitSubjectPolicy.refusal("a..b")?.contains("empty token") == true)
        #expect(EmitSubjectPolicy.allowEntryProblem("calendar.event.>") == nil)
        // The engine's own command and output subjects: refused with the rule and the way out, unless allowed.
        let forged = EmitSubjectPolicy.refusal("calendar.command.schedule_event")
        #expect(forged?.contains("commands or outputs") == true && forged?.contains("--emit-allow") == true)
        #expect(EmitSubjectPolicy.refusal("automation.output.produced")?.contains("automation.output.produced") == true)
        #expect(EmitSubjectPolicy.refusal("calendar.command.schedule_event", allowed: ["calendar.command.>"]) == nil)
        #expect(EmitSubjectPolicy.refusal("notifications.command.send", allowed: ["calendar.command.>"]) != nil)
        // Definitions are checked before the engine's settings are known: the rule waits for the run.
        #expect(EmitSubjectPolicy.refusal("automation.output.produced", checkInbound: false) == nil)
        #expect(EmitSubjectPolicy.allowEntryProblem("a.>.b") != nil)
        #expect(EmitSubjectPolicy.allowEntryProblem("a..b") != nil)
        #expect(EmitSubjectPolicy.allowEntryProblem("a*.b") != nil)
    }

    // MARK: Definitions

    func flow(_ steps: [JSONValue]) -> JSONValue {
        [
            "id": "f", "trigger": ["event": "AssistantCommandIssued", "intent": "x"], "steps": .array(steps),
            "output": ["text": "ok"],
        ]
    }

    func problems(_ definition: JSONValue) -> [String] {
        if case .failure(let failure) = FlowValidator.validate(definition) {
            return failure.problems.map(\.description)
        }
        return []
    }

    @Test func aTemplateMayNotChooseTheHostPortOrSubject() {
        let found = problems(
            flow([
                ["id": "a", "action": "http.request", "with": ["method": "GET", "url": "{{trigger.entities.url}}"]],
                ["id": "b", "action": "http.request", "with": ["method": "GET", "url": "http://{{input.host}}/x"]],
                [
                    "id": "c", "action": "http.request",
                    "with": ["method": "GET", "url": "https://api.example.com{{input.port}}/x"],
                ],
                [
                    "id": "d", "action": "http.request",
                    "with": ["method": "GET", "url": "https://api.example.com:{{input.port}}/x"],
                ],
                ["id": "e", "action": "emit", "with": ["subject": "orders.{{input.kind}}", "type": "T"]],
                ["id": "f", "action": "emit", "with": ["subject": "{{trigger.entities.subject}}", "type": "T"]],
                ["id": "g", "action": "emit", "with": ["subject": "ledger.run.x", "type": "T"]],
                ["id": "h", "action": "http.request", "with": ["method": "GET", "url": "ftp://example.com/"]],
                [
                    "id": "i", "action": "http.request",
                    "with": ["method": "GET", "url": "https://user:pw@api.example.com/"],
                ],
                ["id": "j", "action": "http.request", "with": ["method": "GET", "url": 42]],
                [
                    "id": "k", "action": "transform", "with": ["value": 1],
                    "compensate": [
                        "action": "http.request", "with": ["method": "POST", "url": "{{steps.k.output.url}}"],
                    ],
                ],
                ["id": "l", "action": "emit", "with": ["subject": "$JS.API.STREAM.DELETE.LEDGER", "type": "T"]],
            ]))
        for path in [
            "steps[0].with.url", "steps[1].with.url", "steps[2].with.url", "steps[3].with.url", "steps[4].with.subject",
            "steps[5].with.subject", "steps[6].with.subject", "steps[7].with.url", "steps[8].with.url",
            "steps[9].with.url",
            "steps[10].compensate.with.url", "steps[11].with.subject",
        ] {
            #expect(found.contains { $0.hasPrefix(path + ":") }, "no problem at \(path) in \(found)")
        }
        #expect(found.first { $0.hasPrefix("steps[1].with.url") }?.contains("e.g.") == true, "says what to write")
    }

    @Test func templatesInThePathAndQueryAreFine() {
        #expect(
            problems(
                flow([
                    [
                        "id": "a", "action": "http.request",
                        "with": [
                            "method": "GET",
                            "url": "https://api.example.com/users/{{trigger.entities.id}}?q={{trigger.entities.q}}",
                        ],
                    ],
                    [
                        "id": "b", "action": "http.request",
                        "with": ["method": "GET", "url": "http://127.0.0.1:8080?x={{trigger.entities.q}}"],
                    ],
                    [
                        "id": "c", "action": "http.request",
                        "with": ["method": "GET", "url": "https://api.example.com"],
                    ],
                    [
                        "id": "d", "action": "emit",
                        "with": [
                            "subject": "orders.shipped", "type": "T", "data": ["kind": "{{trigger.entities.kind}}"],
                        ],
                    ],
                ])) == [])
    }

    // MARK: Dry runs

    @Test func aDryRunRecordsHeaderNamesButNotTheirValues() throws {
        let definition = DeciderTests.flow(
            [
                StepDefinition(
                    id: "call", action: "http.request",
                    with: [
                        "method": "POST", "url": "https://api.example.com/x",
                        "headers": ["Authorization": "Bearer {{trigger.user.id}}-secret", "X-Api-Key": "k-123"],
                        "body": ["a": 1],
                    ])
            ], output: ["text": "ok"])
        let steps = RunScenario(definition, mode: .dry).when(.advance).actions
        var output: JSONValue?
        for case .append(.stepAttemptSucceeded(let success)) in steps { output = success.output }
        let recorded = try #require(output)
        #expect(recorded["headers"] == ["Authorization": "[redacted]", "X-Api-Key": "[redacted]"])
        #expect(recorded["simulated"] == true)
        #expect(recorded["body"] == ["a": 1], "the rest of the request is kept")
        #expect(!recorded.compactJSON.contains("secret") && !recorded.compactJSON.contains("k-123"))
        #expect(OutboundTargets.redactingHeaders(["headers": "{{input.h}}"]) == ["headers": "[redacted]"])
    }
}
