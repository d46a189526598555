import Foundation
public import Hummingbird
public import LedgerCore

extension Problem: HTTPResponseError {
    /// The HTTP status of the problem.
    public var status: HTTPResponse.Status { HTTPResponse.Status(code: statusCode) }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// `application/problem+json`, with `Retry-After` when the problem says when to retry.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        let body = try Self.encoder.encode(json)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
