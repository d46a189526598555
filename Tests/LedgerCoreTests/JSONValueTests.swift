import LedgerCore
import Testing

@Suite struct JSONValueTests {
    @Test func pathsReachIntoObjectsAndArrays() {
        let value: JSONValue = ["a": ["b": [1, ["c": "x"]]]]
        #expect(value[path: "a.b.0"] == 1)
        #expect(value[path: "a.b.1.c"] == "x")
        #expect(value[path: "a.z"] == nil)
    }

    @Test func compactJSONSortsKeys() {
        let value: JSONValue = ["b": 1, "a": [true, nil, "q\""]]
        #expect(value.compactJSON == #"{"a":[true,null,"q\""],"b":1}"#)
    }
}
