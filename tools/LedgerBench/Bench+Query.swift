import Foundation
import Histogram
import LedgerCore
import LedgerDevServices
import LedgerEngine
import LedgerLMDB
import LedgerNATS
import LedgerTestSupport
import Logging
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension Bench {
    func queries(serve: LedgerflowServe, runIDs: [String]) async throws {
        let seconds = quick ? 1 : 10
        say(
            "\n4. query: wrk -t2 -c16 -d\(seconds)s over \(runIDs.count) random run ids vs GET /ping on the same server"
        )
        let ids = "\(scratch)/ids.lua"
        var lua = "ids = {\n" + runIDs.map { "\"\($0)\"," }.joined(separator: "\n") + "\n}\n"
        lua += """
            request = function()
              return wrk.format("GET", "/automation/runs/" .. ids[math.random(#ids)], {["Authorization"] = "Bearer \(LedgerflowServe.token)"})
            end
            """
        try lua.write(toFile: ids, atomically: true, encoding: .utf8)
        let runs = try wrk(["-t2", "-c16", "-d\(seconds)s", "--latency", "-s", ids, "http://127.0.0.1:\(serve.port)/"])
        let ping = try wrk(["-t2", "-c16", "-d\(seconds)s", "--latency", "http://127.0.0.1:\(serve.port)/ping"])
        report.add(
            Figure(
                scenario: "4. query", metric: "GET /automation/runs/{id} requests/s", value: runs.rps, unit: "req/s",
                ceiling: ping.rps,
                ceilingName: "static GET /ping", target: "ratio ≥ 0.8", met: runs.rps / ping.rps >= 0.8,
                key: "query"))
        report.add(
            Figure(
                scenario: "4. query", metric: "GET /automation/runs/{id} p99 latency", value: runs.p99, unit: "ms",
                ceiling: ping.p99, ceilingName: "static GET /ping p99"))
    }

    func wrk(_ arguments: [String]) throws -> (rps: Double, p99: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        var rps = 0.0
        var p99 = 0.0
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if line.contains("Requests/sec:"), let v = parts.last.flatMap({ Double($0) }) { rps = v }
            if parts.first == "99%", let text = parts.last { p99 = Self.milliseconds(String(text)) }
            if line.contains("Non-2xx") { FileHandle.standardError.write(Data("wrk: \(line)\n".utf8)) }
        }
        guard rps > 0 else { throw RuntimeError("wrk gave no figure:\n\(output)") }
        return (rps, p99)
    }

    static func milliseconds(_ text: String) -> Double {
        if text.hasSuffix("us") { return (Double(text.dropLast(2)) ?? 0) / 1000 }
        if text.hasSuffix("ms") { return Double(text.dropLast(2)) ?? 0 }
        if text.hasSuffix("s") { return (Double(text.dropLast(1)) ?? 0) * 1000 }
        return Double(text) ?? 0
    }
}
