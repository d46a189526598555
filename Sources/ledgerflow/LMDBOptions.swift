import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// The LMDB settings of the commands that open the read models for writing (`serve`, `dev`, `projections rebuild`).
struct LMDBOptions: ParsableArguments {
    @Option(
        name: .customLong("lmdb-map-size"),
        help: ArgumentHelp(
            "Initial size of the LMDB map, which bounds the read models until it grows (it doubles when full, up to 1TiB or this size if larger): 512MiB, 8GiB... Env LEDGERFLOW_LMDB_MAP_SIZE. Default 8GiB.",
            valueName: "SIZE"))
    var mapSizeOption: String?

    @Option(
        name: .customLong("lmdb-writer-nice"),
        help: ArgumentHelp(
            "How far below the process's priority the read models' writer thread runs (0 to 19; 0 keeps the process's): on busy cores the runs' steps and appends go first and the read models catch up a moment later with a larger batch. Env LEDGERFLOW_LMDB_WRITER_NICE. Default \(LMDBOptions.defaultWriterNiceness) for serve and dev, 0 for projections rebuild.",
            valueName: "N"))
    var writerNiceOption: String?

    static let environmentKey = "LEDGERFLOW_LMDB_MAP_SIZE"
    static let niceEnvironmentKey = "LEDGERFLOW_LMDB_WRITER_NICE"
    /// How far below the process's priority the read models' writer runs in `serve` and `dev` unless told.
    static let defaultWriterNiceness: Int32 = 10
    /// What a map size may be: room for a few pages at least; at most 64 TiB (a 64-bit address space holds it).
    static let minimum = 1 << 20
    static let maximum = 64 << 40

    func validate() throws {
        _ = try mapSize()
        _ = try writerNiceness()
    }

    /// A setting's text and where it came from: the option, else the environment variable; nil when neither is set.
    static func given(_ option: String?, _ flag: String, _ environmentKey: String) -> (text: String, source: String)? {
        if let option { return (option, flag) }
        return ProcessInfo.processInfo.environment[environmentKey].map { ($0, environmentKey) }
    }

    /// The writer thread's nice value above the process's: the option, else the environment variable, else
    /// `fallback`.
    func writerNiceness(default fallback: Int32 = Self.defaultWriterNiceness) throws -> Int32 {
        guard let (text, source) = Self.given(writerNiceOption, "--lmdb-writer-nice", Self.niceEnvironmentKey) else {
            return fallback
        }
        guard let value = Int32(text.trimmingCharacters(in: .whitespaces)), (0...19).contains(value) else {
            throw ValidationError(
                "\(source) \"\(text.prefix(40))\" is not a whole number from 0 to 19. It is how far below the process's priority the read models' writer runs (0 keeps the process's); without the setting it is \(Self.defaultWriterNiceness) (0 for projections rebuild)."
            )
        }
        return value
    }

    /// The map size in bytes: the option, else the environment variable, else the default.
    func mapSize() throws -> Int {
        guard let (text, source) = Self.given(mapSizeOption, "--lmdb-map-size", Self.environmentKey) else {
            return ReadModelStore.defaultMapSize
        }
        switch ByteSizeText.parse(text, minimum: Self.minimum, maximum: Self.maximum) {
        case .success(let bytes): return bytes
        case .failure(let problem):
            throw ValidationError(
                "\(source) \(problem.message). A map size is between 1MiB and 64TiB; without the setting the map starts at \(ByteSizeText.describe(ReadModelStore.defaultMapSize)), and it grows by itself when full."
            )
        }
    }
}
