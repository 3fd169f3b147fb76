import FuzzSupport
import LowRank
import LowRankModels

// Token ids as JSON lines, then the dataset built from them (vocabulary check, windows).
fuzz { bytes in
    let rows = try TokenDataset.parseJSONLines(bytes, path: "fuzz.jsonl")
    _ = try TokenDataset(rows: rows, vocabularySize: 1000, maxLength: 3)
}
