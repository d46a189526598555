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

    static func outcome(
        _ parse: (String) throws(Template.RenderError) -> [Template.Piece], _ text: String
    ) -> Result<[Template.Piece], Template.RenderError> {
        do { return .success(try parse(text)) } catch { return .failure(error) }
    }

    static func differs(_ text: String) -> String? {
        let expected = outcome(foundationParse, text)
        let actual = outcome({ text throws(Template.RenderError) in try Template.parse(text) }, text)
        return actual == expected ? nil : "\(text.debugDescription): \(actual), expected \(expected)"
    }

    /// A reference is trimmed by characters; most are kept whole at a glance (an ASCII byte other than a space at
    /// either end). Every short string over characters that are, are not, or join into whitespace trims as the
    /// character-by-character trim does.
    @Test func everyShortReferenceTrimsAsByCharacters() {
        func byCharacters(_ text: Substring) -> String {
            var s = text
            while let f = s.first, f.isWhitespace { s = s.dropFirst() }
            while let l = s.last, l.isWhitespace { s = s.dropLast() }
            return String(s)
        }
        let alphabet = [
            "a", ".", "0", " ", "\t", "\n", "\r", "\u{0B}", "\u{1F}", "\u{7F}", "\u{A0}", "\u{85}", "\u{2028}",
            "\u{3000}",
            "\u{301}", "\u{600}", "\u{200D}", "é", "😀", "\u{1F1E6}",
        ]
        var texts = [""]
        var frontier = [""]
        for _ in 0..<3 {
            frontier = frontier.flatMap { prefix in alphabet.map { prefix + $0 } }
            texts += frontier
        }
        for text in texts {
            // Cut at byte positions, as the parser cuts between its braces (which may fall inside a character).
            let braced = "{" + text + "}"
            let inside = braced[
                braced.utf8.index(after: braced.startIndex)..<braced.utf8.index(before: braced.endIndex)]
            #expect(inside.trimmingWhitespace() == byCharacters(inside), "\(text.unicodeScalars.map { $0.value })")
            #expect(text.trimmingWhitespace() == byCharacters(Substring(text)))
        }
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
                if let difference = Self.differs(text) {
                    Issue.record("\(difference)")
                    return
                }
                checked += 1
            }
        }
        #expect(checked == (1...5).reduce(0) { $0 + Int(pow(Double(alphabet.count), Double($1))) })
    }

    /// Every scalar of the Basic Multilingual Plane, and the astral ranges that hold extenders (musical symbols,
    /// emoji modifiers, tags), right after an opening and a closing delimiter, and inside a reference.
    @Test func everyCharacterAfterADelimiterSplitsAsFoundationSplitIt() {
        let ranges: [ClosedRange<UInt32>] = [
            0x80...0xD7FF, 0xE000...0xFFFF, 0x1D160...0x1D1AF, 0x1F3F0...0x1F3FF, 0xE0000...0xE01EF,
        ]
        var differences: [String] = []
        for range in ranges {
            for value in range {
                guard let scalar = Unicode.Scalar(value) else { continue }
                let x = String(Character(scalar))
                for text in ["{{\(x)a}}", "{{a}}\(x)", "{{a}\(x)}}", "{\(x){a}}"] {
                    if let difference = Self.differs(text) { differences.append(difference) }
                }
            }
        }
        #expect(differences.isEmpty, "\(differences.count) differ, first: \(differences.prefix(5))")
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
