import LedgerTestSupport
import Testing

/// The map size setting, checked before anything is opened.
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
}
