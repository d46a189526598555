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

    static let environmentKey = "LEDGERFLOW_LMDB_MAP_SIZE"
    /// What a map size may be: room for a few pages at least; at most 64 TiB (a 64-bit address space holds it).
    static let minimum = 1 << 20
    static let maximum = 64 << 40

    func validate() throws {
        _ = try mapSize()
    }

    /// The map size in bytes: the option, else the environment variable, else the default.
    func mapSize() throws -> Int {
        let (text, source): (String, String)
        if let mapSizeOption {
            (text, source) = (mapSizeOption, "--lmdb-map-size")
        } else if let value = ProcessInfo.processInfo.environment[Self.environmentKey] {
            (text, source) = (value, Self.environmentKey)
        } else {
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
