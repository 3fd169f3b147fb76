import FuzzSupport
import LowRank
import LowRankModels

// Token ids (and optional labels) as JSON lines, then the dataset built from them (vocabulary
// check, labels against their rows, windows).
fuzz { bytes in
    let (rows, labels) = try TokenDataset.parseJSONLines(bytes, path: "fuzz.jsonl")
    _ = try TokenDataset(rows: rows, labels: labels, vocabularySize: 1000, maxLength: 3)
}
