import ArgumentParser
import Foundation
import LedgerCore
import LedgerEngine

/// How `serve` and `dev` talk to the other services: the discovery cache.
struct IntegrationOptions: ParsableArguments {
    @Option(
        name: .customLong("discovery-cache-ttl"),
        help: ArgumentHelp(
            "How long a discovery.search answer is reused for the same query (case, surrounding and repeated spaces ignored); 0 turns the cache off (0 to 1d; default 60s). Env LEDGERFLOW_DISCOVERY_CACHE_TTL.",
            valueName: "DURATION"))
    var cacheTTLOption: String?

    @Option(
        name: .customLong("discovery-cache-entries"),
        help: ArgumentHelp(
            "How many queries the discovery cache holds at most (0 to 100000; default 1000; its bytes are bounded too). Env LEDGERFLOW_DISCOVERY_CACHE_ENTRIES.",
            valueName: "N"))
    var cacheEntriesOption: String?

    static let ttlKey = "LEDGERFLOW_DISCOVERY_CACHE_TTL"
    static let entriesKey = "LEDGERFLOW_DISCOVERY_CACHE_ENTRIES"

    func validate() throws {
        var configuration = EngineConfiguration()
        try apply(to: &configuration)
    }

    /// Sets the discovery cache of `configuration`, refusing values that cannot work.
    func apply(to configuration: inout EngineConfiguration) throws {
        let environment = ProcessInfo.processInfo.environment
        if let text = cacheTTLOption ?? environment[Self.ttlKey] {
            let source = cacheTTLOption != nil ? "--discovery-cache-ttl" : Self.ttlKey
            let parsed = text.trimmingCharacters(in: .whitespaces) == "0" ? .success(0) : DurationText.parse(text)
            guard case .success(let seconds) = parsed, seconds >= 0, seconds <= 86_400 else {
                throw ValidationError(
                    "\(source): \"\(text.prefix(40))\" is not a duration from 0 to 1d (e.g. 60s, 10m; 0 turns the cache off)"
                )
            }
            configuration.discoveryCacheTTL = .milliseconds(Int64((seconds * 1000).rounded()))
        }
        if let text = cacheEntriesOption ?? environment[Self.entriesKey] {
            let source = cacheEntriesOption != nil ? "--discovery-cache-entries" : Self.entriesKey
            guard let count = Int(text.trimmingCharacters(in: .whitespaces)), (0...100_000).contains(count) else {
                throw ValidationError("\(source): \"\(text.prefix(40))\" is not a whole number from 0 to 100000")
            }
            configuration.discoveryCacheEntries = count
        }
    }
}
