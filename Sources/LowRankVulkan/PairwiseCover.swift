/// A pairwise covering array, built greedily: rows (one choice per dimension) such that every
/// two dimensions take each pair of their choices in some row, where a valid row can. How the
/// kernels whose full variant product is too large to compile name the variants they test.
enum PairwiseCover {
    /// Rows over dimensions of `choices[d]` choices each, only `valid` ones, until every pair a
    /// valid row has is covered; deterministic.
    static func rows(_ choices: [Int], valid: ([Int]) -> Bool) -> [[Int]] {
        var candidates: [[Int]] = [[]]
        for count in choices { candidates = candidates.flatMap { row in (0..<count).map { row + [$0] } } }
        candidates = candidates.filter(valid)
        // Pair (d1, c1, d2, c2) with d1 < d2, as one index.
        let offsets = choices.indices.map { choices[..<$0].reduce(0, +) }, total = choices.reduce(0, +)
        let pairs = candidates.map { row in
            choices.indices.flatMap { d1 in (d1 + 1..<choices.count).map { d2 in (offsets[d1] + row[d1]) * total + offsets[d2] + row[d2] } }
        }
        var uncovered = [Bool](repeating: false, count: total * total)
        for list in pairs { for p in list { uncovered[p] = true } }
        var remaining = uncovered.filter { $0 }.count
        var result: [[Int]] = []
        while remaining > 0 {
            var best = 0, bestGain = 0
            for (i, list) in pairs.enumerated() {
                var gain = 0
                for p in list where uncovered[p] { gain += 1 }
                if gain > bestGain { (best, bestGain) = (i, gain) }
            }
            for p in pairs[best] where uncovered[p] { uncovered[p] = false }
            remaining -= bestGain
            result.append(candidates[best])
        }
        return result
    }
}
