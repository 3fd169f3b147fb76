import FuzzSupport
import LowRank

// What parses must serialize to text that parses back to the same value.
fuzz { bytes in
    let value = try JSON.parse(raw: bytes)
    let again = try? JSON.parse(Array(value.serialized.utf8))
    require(again == value, "\(value.serialized) does not parse back to itself")
}
