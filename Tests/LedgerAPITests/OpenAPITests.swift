import Foundation
import Hummingbird
import LedgerAPI
import LedgerCore
import LedgerEngine
import LedgerTestSupport
import Testing

/// The OpenAPI document (`Sources/LedgerAPI/Resources/openapi.json`) against the router: every route is described,
/// every described operation is served, each with the role it needs, and the served document is the file.
enum OpenAPI {
    /// The file in the repository.
    static let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Sources/LedgerAPI/Resources/openapi.json").standardized

    static let methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]

    /// `"GET /automation/flows/{id}"` → the operation's `x-required-role`, for every operation of `document`.
    static func operations(_ document: JSONValue) -> [String: String] {
        var operations: [String: String] = [:]
        for (path, item) in document["paths"]?.objectValue ?? [:] {
            for (method, operation) in item.objectValue ?? [:] where methods.contains(method) {
                operations["\(method.uppercased()) \(path)"] = operation["x-required-role"]?.stringValue ?? "(missing)"
            }
        }
        return operations
    }

    static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }
}

extension Integration {
    @Suite struct OpenAPITests {
        /// Fails when a route is added (or removed) without its description: add the operation to
        /// `Sources/LedgerAPI/Resources/openapi.json`, with the role in `x-required-role`.
        @Test func everyRouteIsDocumentedAndEveryOperationIsARoute() async throws {
            let documented = Set(OpenAPI.operations(try OpenAPI.parse(OpenAPIDocument.bytes)).keys)
            #expect(documented.count > 10)
            try await withTestStack { stack in
                let registered = Set(RouterClient.router(stack).routes.map { "\($0.method) \($0.path)" })
                #expect(
                    registered.subtracting(documented).isEmpty,
                    "routes missing from openapi.json: \(registered.subtracting(documented).sorted())")
                #expect(
                    documented.subtracting(registered).isEmpty,
                    "operations in openapi.json that no route serves: \(documented.subtracting(registered).sorted())")
            }
        }

        /// `x-required-role` is the role the router's test table checks each route with; a public route says
        /// `none` and asks for no security, every other route inherits the document's bearer scheme.
        @Test func eachOperationNamesTheRoleItsRouteNeeds() throws {
            let document = try OpenAPI.parse(OpenAPIDocument.bytes)
            let operations = OpenAPI.operations(document)
            #expect(document["security"] == [["bearer": []]])
            for route in RouterTests.routes {
                let key = "\(route.method) \(route.template)"
                #expect(operations[key] == route.role?.rawValue ?? "none", "\(key)")
                let security = document["paths"]?[route.template]?[route.method.rawValue.lowercased()]?["security"]
                #expect(
                    route.role == nil ? security == .array([]) : security == nil,
                    "\(key): \(String(describing: security))")
            }
        }

        /// What `GET /openapi.json` serves, without a token, is the file byte for byte: JSON, OpenAPI 3.1.
        @Test func theServedDocumentIsTheFile() async throws {
            let file = try Data(contentsOf: OpenAPI.file)
            #expect(Array(file) == OpenAPIDocument.bytes)
            let document = try OpenAPI.parse(file)
            let version = try #require(document["openapi"]?.stringValue)
            #expect(version.hasPrefix("3.1."), "openapi: \(version)")
            try await withTestStack { stack in
                try await RouterClient.test(stack) { client in
                    let answer = try await client.call(.get, "/openapi.json", token: nil)
                    #expect(answer.status == 200)
                    #expect(answer.headers[.contentType] == "application/json")
                    #expect(Data(answer.text.utf8) == file)
                }
            }
        }
    }
}
