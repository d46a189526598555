import Foundation
import HTTPTypes
import Hummingbird
import LedgerDevServices
import Logging
import ServiceLifecycle
import Synchronization

/// The `http.request` steps' target: counts every call by its `Idempotency-Key` and answers slowly at random
/// (most at once, some after a second or so, a few after the steps' timeout, so their attempt is retried under the
/// same key), now and then with a 503.
final class CountingTarget: Sendable {
    let port: Int
    private let calls = Mutex<[String: Int]>([:])
    private let random: SeededRandom
    private let running = Mutex<(ServiceGroup, Task<Void, any Error>)?>(nil)

    init(seed: UInt64) {
        port = LocalNATSServer.freePort()
        random = SeededRandom(seed: seed)
    }

    var url: String { "http://127.0.0.1:\(port)/effect" }

    /// Calls received so far, by idempotency key (calls without one under "").
    func received() -> [String: Int] { calls.withLock { $0 } }

    func start(logger: Logger) async throws {
        let router = Router()
        router.post("/effect") { request, _ -> Response in
            let key = request.headers[HTTPField.Name("Idempotency-Key")!] ?? ""
            self.calls.withLock { $0[key, default: 0] += 1 }
            let roll = self.random.unit()
            let delay: Duration
            switch roll {
            case ..<0.70: delay = .milliseconds(Int64(self.random.unit() * 30))
            case ..<0.93: delay = .milliseconds(200 + Int64(self.random.unit() * 1300))
            default: delay = .milliseconds(3500 + Int64(self.random.unit() * 2500))
            }
            try? await Task.sleep(for: delay)
            if self.random.unit() < 0.05 {
                return Response(status: .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: "busy")))
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"ok\":true}")))
        }
        var quiet = logger
        quiet.logLevel = .error
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: quiet)
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: app)], gracefulShutdownSignals: [], logger: quiet))
        running.withLock { $0 = (group, Task { try await group.run() }) }
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let fd = LocalNATSServer.connectLoopback(port: port)
            if fd >= 0 {
                close(fd)
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ChaosError("the counting HTTP target did not listen on 127.0.0.1:\(port)")
    }

    func stop() async {
        guard let (group, task) = running.withLock({ $0.take() }) else { return }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// A seeded generator (SplitMix64) shared by tasks: the same seed draws the same sequence (the schedule of kills
/// and restarts is reproducible; what interleaves with it is not).
final class SeededRandom: Sendable {
    private let state: Mutex<UInt64>

    init(seed: UInt64) { state = Mutex(seed) }

    func next() -> UInt64 {
        state.withLock { s in
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// In [0, 1).
    func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    func duration(_ low: Duration, _ high: Duration) -> Duration { low + (high - low) * unit() }
}
