import Foundation
import LedgerDevServices
import LedgerEngine

/// A minimal HTTP/1.1 keep-alive client on a blocking socket, so that latency figures measure the server and not
/// the client library (everything else speaks to the API through LedgerTestSupport's `TestHTTPClient`).
final class RawHTTP {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = LocalNATSServer.connectLoopback(port: port)
        guard fd >= 0 else { throw RuntimeError("cannot connect to 127.0.0.1:\(port)") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// GET `path`; returns the status and the body.
    func get(_ path: String, token: String) throws -> (Int, [UInt8]) {
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n\r\n"
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw RuntimeError("send failed") }
            sent += n
        }
        // Headers, then Content-Length bytes of body.
        var headerEnd: Int?
        while headerEnd == nil {
            headerEnd = buffer.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound
            if headerEnd == nil { try fill() }
        }
        let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        var length = 0
        for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
        }
        while buffer.count < headerEnd! + length { try fill() }
        let body = Array(buffer[headerEnd!..<headerEnd! + length])
        buffer.removeFirst(headerEnd! + length)
        return (status, body)
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw RuntimeError("connection closed") }
        buffer += chunk[..<n]
    }
}
