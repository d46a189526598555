// libFuzzer target: the inbound envelope decoder, as the engine calls it for chat commands, calendar answers and
// run requests. Never traps; a refusal is a sentence; an accepted event is within the limits.
import LedgerCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let result = decodeInbound(
        bytes, expectedTypes: ["AssistantCommandIssued", "FlowRunRequested"],
        required: ["intent", "user.id", "entities.0"],
        codec: EventCodec())
    switch result {
    case .success(let event):
        for attribute in [
            event.id, event.source, event.type, event.subject ?? "", event.runid ?? "", event.traceparent ?? "",
        ]
        where attribute.utf8.count > Limits.identifierBytes {
            fatalError("an attribute over the limit was accepted")
        }
        _ = event.data.compactJSON
    case .failure(let problem):
        guard !problem.reason.isEmpty else { fatalError("a refusal without a reason") }
    }
    return 0
}
