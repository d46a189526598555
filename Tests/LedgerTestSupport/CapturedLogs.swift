public import Logging
import Synchronization

/// Keeps what a logger says, for tests that check what an operator would read: `logger` writes into `records`.
public final class CapturedLogs: Sendable {
    public struct Record: Sendable, Equatable {
        public var level: Logger.Level
        public var message: String
        public var metadata: [String: String]
    }

    private let stored = Mutex<[Record]>([])

    public init() {}

    /// What was logged so far, oldest first.
    public var records: [Record] { stored.withLock { $0 } }

    /// A logger at `level` whose records this keeps.
    public func logger(label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in Handler(logs: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func add(_ record: Record) { stored.withLock { $0.append(record) } }

    private struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            logs.add(
                Record(
                    level: event.level, message: "\(event.message)",
                    metadata: merged.mapValues { "\($0)" }))
        }
    }
}
