/// Checks of an inbound event's data that every handler makes: required fields present, and fields that name things
/// (and end up in keys, ids and subjects) short strings.
public enum InboundFields {
    /// The first problem with `event`'s data, as a refusal reason; nil when there is none.
    public static func problem(in event: CloudEvent<JSONValue>, required: [String], identifiers: [String]) -> String? {
        let absent = required.filter { event.data[path: $0] == nil || event.data[path: $0] == .null }
        if !absent.isEmpty {
            return "\(event.type) is missing data field(s): \(absent.joined(separator: ", "))"
        }
        return identifierProblem(event.data, identifiers, type: event.type)
    }

    /// The first of `fields` that is present but not a string of at most `Limits.identifierBytes` bytes.
    public static func identifierProblem(_ data: JSONValue, _ fields: [String], type: String) -> String? {
        for field in fields {
            guard let value = data[path: field], value != .null else { continue }
            guard case .string(let text) = value else {
                return "\(type): data.\(field) must be a string"
            }
            if text.utf8.count > Limits.identifierBytes {
                return
                    "\(type): data.\(field) is \(text.utf8.count) bytes; identifiers may be at most \(Limits.identifierBytes) bytes"
            }
        }
        return nil
    }
}
