// libFuzzer target: cron expressions, durations, timestamps and retry delays: the small parsers of text and
// numbers. None traps; what they accept is within the documented limits.
import Foundation
import LedgerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    _ = CronCheck.problem(text)
    switch DurationText.parse(text) {
    case .success(let seconds):
        guard seconds.isFinite, seconds > 0, seconds <= Limits.runTimeoutSeconds else {
            fatalError("duration \(text) = \(seconds)")
        }
        _ = seconds.clampedMilliseconds
    case .failure(let problem):
        guard DurationText.seconds(text) == nil, !problem.message.isEmpty else {
            fatalError("inconsistent duration \(text)")
        }
    }
    if let date = Timestamp.parse(text) {
        let formatted = Timestamp.format(date)
        guard Timestamp.parse(formatted) != nil else {
            fatalError("Timestamp.format wrote \(formatted), which parse refuses")
        }
    }
    // Numbers from the bytes: dates (NaN, infinities, far away) and stored retry policies.
    if size >= 8 {
        let bits = (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) }
        let double = Double(bitPattern: bits)
        let formatted = Timestamp.format(Date(timeIntervalSince1970: double))
        guard Timestamp.parse(formatted) != nil else {
            fatalError("Timestamp.format wrote \(formatted), which parse refuses")
        }
        _ = Timestamp.format(millis: Int64(bitPattern: bits))
        _ = double.exactInt()
        _ = double.clampedMilliseconds
    }
    if size >= 33 {
        func int(_ at: Int) -> Int {
            Int(truncatingIfNeeded: (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[at + $1]) })
        }
        let policy = RetryPolicy(initial_ms: int(0), max_ms: int(8), jitter: bytes[32] & 1 == 0)
        let random = Double(bitPattern: UInt64(truncatingIfNeeded: int(24)))
        for backoff in RetryPolicy.Backoff.allCases {
            var p = policy
            p.backoff = backoff
            let delay = p.delayMillis(after: int(16), random: random)
            guard (0...Limits.retryDelayMillis).contains(delay) else { fatalError("delay \(delay) out of bounds") }
        }
    }
    return 0
}
