import LedgerCore
import Testing

@Suite struct ByteSizeTextTests {
    @Test func sizesWithAndWithoutUnitsAreRead() throws {
        #expect(try ByteSizeText.parse("512MiB").get() == 512 << 20)
        #expect(try ByteSizeText.parse("8GiB").get() == 8 << 30)
        #expect(try ByteSizeText.parse("8gib").get() == 8 << 30)
        #expect(try ByteSizeText.parse("1TiB").get() == 1 << 40)
        #expect(try ByteSizeText.parse("64K").get() == 64 << 10)
        #expect(try ByteSizeText.parse("2G").get() == 2 << 30)
        #expect(try ByteSizeText.parse("1GB").get() == 1_000_000_000)
        #expect(try ByteSizeText.parse("4096").get() == 4096)
        #expect(try ByteSizeText.parse(" 16 MiB ").get() == 16 << 20)
        #expect(ByteSizeText.describe(8 << 30) == "8GiB")
        #expect(ByteSizeText.describe(1000) == "1000 bytes")
    }

    @Test(arguments: [
        ("", "empty"), ("0", "is no size"), ("0GiB", "is no size"), ("-1", "is negative"), ("abc", "is not a size"),
        ("1.5GiB", "is not a size"), ("GiB", "is not a size"), ("12XB", "is not a size"),
        ("99999999999999999999", "larger than"), ("9000000000000TiB", "larger than"),
    ])
    func whatIsNoSizeIsNamed(_ text: String, _ complaint: String) {
        guard case .failure(let problem) = ByteSizeText.parse(text) else {
            Issue.record("\(text) was read as a size")
            return
        }
        #expect(problem.message.contains(complaint), "\(problem.message)")
        if !text.isEmpty, !complaint.hasPrefix("larger") { #expect(problem.message.contains("512MiB")) }
    }

    @Test func boundsAreNamedInUnits() {
        guard case .failure(let small) = ByteSizeText.parse("12KiB", minimum: 1 << 20) else {
            Issue.record("12KiB passed a 1MiB minimum")
            return
        }
        #expect(small.message.contains("1MiB"))
        guard case .failure(let large) = ByteSizeText.parse("2TiB", maximum: 1 << 40) else {
            Issue.record("2TiB passed a 1TiB maximum")
            return
        }
        #expect(large.message.contains("1TiB"))
    }
}
