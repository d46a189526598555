// libFuzzer target: the JSON tree parser. Whatever the bytes, parsing never traps, and every document it accepts
// survives a round trip through compact JSON unchanged.
import LedgerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let value = try? JSONTree.parse(bytes) else { return 0 }
    let text = value.compactJSON
    guard let again = try? JSONTree.parse(Array(text.utf8)) else {
        fatalError("compactJSON wrote text the parser refuses: \(text.prefix(200))")
    }
    guard again == value else { fatalError("round trip changed the value: \(text.prefix(200))") }
    guard again.compactJSON == text else { fatalError("compactJSON is not stable: \(text.prefix(200))") }
    // The inbound limit refuses more, never less.
    if (try? JSONTree.parse(bytes, maxDepth: Limits.inboundJSONDepth)) != nil,
        (try? JSONTree.parse(bytes, maxDepth: Limits.storedJSONDepth)) == nil
    {
        fatalError("a document within the inbound depth exceeds the stored depth")
    }
    // Paths made of the document's own keys and of numbers.
    if case .object(let object) = value {
        for key in object.keys.prefix(8) {
            _ = value[path: key]
            _ = value[path: key + ".0"]
            _ = value[path: key + ".99999999999999999999"]
            _ = value[path: key + ".-1"]
        }
    }
    _ = value.interpolated
    _ = value.isTruthy
    return 0
}
