import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// How `serve` and `dev` stop: SIGINT or SIGTERM starts a graceful shutdown (the engine stops taking work, runs stay
/// in the log for the next start); it may take at most 15 s before the services are cancelled, and cancellation at
/// most 10 s more. A second Ctrl-C (or SIGTERM) while stopping ends the process at once: nothing is lost, since
/// every run is in the log and nats-server children stop with the process.
enum Shutdown {
    static let gracefulLimit: Duration = .seconds(15)
    static let cancellationLimit: Duration = .seconds(10)

    static func configuration(
        services: [ServiceGroupConfiguration.ServiceConfiguration], logger: Logger
    ) -> ServiceGroupConfiguration {
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigint, .sigterm], logger: logger)
        configuration.maximumGracefulShutdownDuration = gracefulLimit
        configuration.maximumCancellationDuration = cancellationLimit
        forceOnSecondSignal()
        return configuration
    }

    /// Watches SIGINT and SIGTERM beside the service group: the first one is the group's; the second ends the process.
    static func forceOnSecondSignal() {
        let count = Counter()
        for signalNumber in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                if count.increment() >= 2 {
                    FileHandle.standardError.write(Data("\nstopping now (second signal)\n".utf8))
                    exit(130)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func increment() -> Int {
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }

    /// Kept for the process's life.
    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
}
