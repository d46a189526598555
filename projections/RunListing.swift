import Foundation
public import LedgerCore

/// The ordered index tables of the run listing (`GET /automation/runs?flow_id=&status=&limit=`): newest first by
/// `(created_at, run_id)`, all runs or those of one flow, one status, or both. Each entry's key is
/// `[flow] [status] created_at run_id` and its value the run id, so the listing reads the last `limit` entries under
/// a prefix and looks up only those runs, however many runs the models hold.
///
/// Key order is the order the listing answered in when it sorted decoded runs with Swift's `String` comparison:
/// each text part is its NFC form's UTF-8 (byte order of NFC is `String` order), with 0x00 written as 0x00 0xFF and
/// ended by 0x00 0x01 (so a text sorts before every longer text it begins, and a part never runs into the next).
/// Keys stay within LMDB's 511 bytes: a flow id longer than `flowBytes` once escaped (never a valid flow id) is
/// replaced by 0x01 and the hex SHA-256 of its NFC form, so one flow still has one prefix; a `created_at` longer
/// than `timeBytes` (never a time the engine writes) is cut there, so such runs are ordered among themselves by
/// their first `timeBytes` bytes and then their id.
public enum RunListing {
    /// All runs: `created_at run_id`.
    public static let byTime = "runs_by_time"
    /// `flow created_at run_id`.
    public static let byFlow = "runs_by_flow"
    /// `status created_at run_id`.
    public static let byStatus = "runs_by_status"
    /// `flow status created_at run_id`.
    public static let byFlowStatus = "runs_by_flow_status"

    /// Escaped bytes of a flow id kept as they are (a valid flow id has at most 128 characters, all ASCII).
    static let flowBytes = 130
    /// Escaped bytes of `created_at` kept in a key (a time the engine writes has about 24).
    static let timeBytes = 160

    /// The index and prefix that list the runs of `flowID` (when given) with `status` (when given).
    public static func index(flowID: String?, status: RunStatus?) -> (table: String, prefix: [UInt8]) {
        switch (flowID, status) {
        case (nil, nil): return (byTime, [])
        case (let flowID?, nil): return (byFlow, prefix(flowID: flowID))
        case (nil, let status?): return (byStatus, prefix(status: status))
        case (let flowID?, let status?): return (byFlowStatus, prefix(flowID: flowID, status: status))
        }
    }

    /// The key part naming one flow.
    public static func prefix(flowID: String) -> [UInt8] {
        let text = normalized(flowID)
        var part: [UInt8] = []
        append(text.utf8, to: &part, limit: .max)
        // A part that begins with 0x01 is hashed too, so no flow id's part equals another's hash.
        if part.count > flowBytes || part.first == 1 {
            part = [1] + Array(SHA256.hexDigits(SHA256.hash(Array(text.utf8))).utf8)
            part += [0, 1]
        }
        return part
    }

    /// The key part naming one status.
    public static func prefix(status: RunStatus) -> [UInt8] {
        var part: [UInt8] = []
        append(status.rawValue.utf8, to: &part, limit: .max)
        return part
    }

    public static func prefix(flowID: String, status: RunStatus) -> [UInt8] {
        prefix(flowID: flowID) + prefix(status: status)
    }

    /// The entry of `run` (stored under `key`, its run id) in an index whose key begins with `prefix`.
    public static func entry(_ run: RunState, key: String, prefix: [UInt8] = []) -> ReadModelIndexEntry {
        var bytes = prefix
        append(normalized(run.created_at).utf8, to: &bytes, limit: timeBytes)
        bytes += key.utf8
        return ReadModelIndexEntry(key: bytes, value: Array(key.utf8))
    }

    /// `text` in NFC (ASCII is already).
    static func normalized(_ text: String) -> String {
        text.utf8.allSatisfy { $0 < 0x80 } ? text : text.precomposedStringWithCanonicalMapping
    }

    /// Appends `text` escaped (0x00 as 0x00 0xFF), at most `limit` bytes of it, and the end mark 0x00 0x01.
    static func append(_ text: some Sequence<UInt8>, to key: inout [UInt8], limit: Int) {
        var written = 0
        for byte in text {
            let size = byte == 0 ? 2 : 1
            if written + size > limit { break }
            written += size
            if byte == 0 {
                key += [0, 0xFF]
            } else {
                key.append(byte)
            }
        }
        key += [0, 1]
    }
}
