import LedgerTestSupport
import Testing

/// The LMDB settings (map size, the writer's priority), checked before anything is opened.
@Suite struct MapSizeSettingTests {
    @Test func aMapSizeThatIsNoSizeIsRefusedWithWhatIsWrongAndWhatToDo() throws {
        for (value, complaint) in [
            ("0", "is no size"), ("-5GiB", "is negative"), ("lots", "is not a size"),
            ("12KiB", "is smaller than the smallest"), ("9999TiB", "is larger than the largest"),
        ] {
            let (status, output) = try ledgerflow([
                "projections", "rebuild", "--lmdb-map-size=\(value)", "--data-dir", "/nonexistent",
            ])
            #expect(status != 0, "\(value): \(output)")
            #expect(output.contains("--lmdb-map-size \"\(value)\" \(complaint)"), "\(value): \(output)")
            #expect(output.contains("between 1MiB and 64TiB"), "what a valid size is: \(output)")
        }
    }

    @Test func aWriterNiceValueOutsideZeroToNineteenIsRefusedWithWhatIsWrongAndWhatToDo() throws {
        for value in ["20", "-1", "high", "1e3", "99999999999", " 7x"] {
            for command in [["serve"], ["projections", "rebuild"]] {
                let (status, output) = try ledgerflow(
                    command + ["--lmdb-writer-nice=\(value)", "--data-dir", "/nonexistent"])
                #expect(status != 0, "\(value): \(output)")
                #expect(
                    output.contains("--lmdb-writer-nice \"\(value)\" is not a whole number from 0 to 19"), "\(output)")
                #expect(output.contains("0 keeps the process's"), "what the setting does: \(output)")
            }
        }
    }
}
