import Foundation
import Testing

@testable import LedgerCore

/// The template scanner compares bytes; it must split every string exactly as the Foundation search it replaced.
@Suite struct TemplateParseTests {
    /// The parser as it was (Foundation's `range(of:)`), the reference the byte scanner is held to.
    static func foundationParse(_ string: String) throws(Template.RenderError) -> [Template.Piece] {
        var pieces: [Template.Piece] = []
        var rest = Substring(string)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<open.lowerBound]))) }
            let offset = string.distance(from: string.startIndex, to: open.lowerBound)
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw Template.RenderError(
                    path: "template", message: "the \"{{\" at character \(offset) is never closed with \"}}\"")
            }
            let reference = rest[open.upperBound..<close.lowerBound].trimmingWhitespace()
            if reference.isEmpty {
                throw Template.RenderError(
                    path: "template", message: "an empty reference \"{{}}\" at character \(offset)")
            }
            pieces.append(.reference(reference))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { pieces.append(.text(String(rest))) }
        return pieces
    }

    static func outcome(_ parse: (String) throws(Template.RenderError) -> [Template.Piece], _ text: String) -> String {
        do { return "\(try parse(text))" } catch { return "error: \(error)" }
    }

    /// Every string of up to 5 symbols from braces, letters, spaces and non-ASCII: marks that join the character
    /// before them (non-spacing U+0301 and U+FE0F, enclosing U+20DD, spacing U+0903), one that joins the character
    /// after it (U+0600), a zero-width joiner and a Hangul vowel.
    @Test func everyShortStringSplitsAsFoundationSplitIt() {
        let marks = ["\u{301}", "\u{600}", "\u{200D}", "\u{903}", "\u{FE0F}", "\u{1160}", "\u{20DD}"]
        let alphabet = ["{", "}", "a", " ", "é", "e\u{301}"] + marks
        var strings = [""]
        var checked = 0
        for _ in 0..<5 {
            strings = strings.flatMap { prefix in alphabet.map { prefix + $0 } }
            for text in strings {
                let expected = Self.outcome(Self.foundationParse, text)
                let actual = Self.outcome({ text throws(Template.RenderError) in try Template.parse(text) }, text)
                if actual != expected {
                    Issue.record("\(text.debugDescription): \(actual), expected \(expected)")
                    return
                }
                checked += 1
            }
        }
        #expect(checked == (1...5).reduce(0) { $0 + Int(pow(Double(alphabet.count), Double($1))) })
    }

    @Test func templatesWithReferencesAreFoundAndOthersRenderAsThemselves() throws {
        #expect(Template.hasReference("a {{b}}"))
        #expect(Template.hasReference("{{"))
        #expect(!Template.hasReference("{ {"))
        #expect(!Template.hasReference("}}{"))
        #expect(!Template.hasReference(""))
        #expect(try Template.render("no { reference } here", context: [:]) == "no { reference } here")
        #expect(
            try Template.render("é {{ run.id }} e\u{301}", context: ["run": ["id": "r-1"]]) == "é r-1 e\u{301}")
    }
}
