public import Foundation
public import LedgerCore

/// The example flows under `examples/flows/`, as the tests and the benchmarks load them.
public enum Fixtures {
    /// The repository's `examples/flows/` directory.
    public static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../examples/flows").standardized

    /// `examples/flows/<name>.json`, decoded.
    public static func flow(_ name: String) throws -> JSONValue {
        try JSONDecoder().decode(
            JSONValue.self, from: Data(contentsOf: examples.appendingPathComponent("\(name).json")))
    }

    /// The calendar flow of the README (`examples/flows/calendar-create-event.json`).
    public static let calendarCreateEvent: JSONValue = {
        do { return try flow("calendar-create-event") } catch {
            fatalError("examples/flows/calendar-create-event.json: \(error)")
        }
    }()

    /// The built `ledgerflow` executable (debug), which the process tests run as a person would.
    public static let ledgerflowBinary = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../.build/debug/ledgerflow").standardized.path
}
