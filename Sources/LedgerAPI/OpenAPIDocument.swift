import Hummingbird

/// The OpenAPI 3.1 document of every route: `Resources/openapi.json`, compiled into the binary, served as it is at
/// `GET /openapi.json`. The one place a route is described; a test fails when a route the router registers is
/// missing from it, or an operation in it is not registered.
public enum OpenAPIDocument {
    /// The document's bytes, exactly as in the file.
    public static let bytes: [UInt8] = PackageResources.openapi_json

    /// Built once: the document never changes while the process runs.
    static let body = ByteBuffer(bytes: bytes)

    /// The answer of `GET /openapi.json`.
    static func response(_ request: Request, _ context: some RequestContext) -> Response {
        Response(status: .ok, headers: JSONExchange.jsonHeaders, body: .init(byteBuffer: body))
    }
}
