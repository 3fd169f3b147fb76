import LowRankCore

/// PEFT's `IncrementalPCA` (`peft.utils.incremental_pca`, after scikit-learn's) as EVA runs it
/// (`lowrank=True`, q = 2k, 4 subspace iterations): the top k principal directions of all the rows
/// seen so far, updated a batch at a time from the previous directions scaled by their singular
/// values, the new batch centred on its own mean, and a row that corrects for the moved mean.
///
/// Each batch's SVD is exact where q ≥ min(rows, columns) of the stacked matrix: PyTorch's
/// `svd_lowrank` then spans the whole row space whatever its Gaussian test matrix, so its result is
/// the exact SVD; below that it is the randomized one (`SingularValueDecomposition(randomized:)`,
/// whose test matrix comes from `seed`, not PyTorch's generator). Signs are PCA's `svd_flip`: each
/// direction's entry of largest magnitude is positive. The first batch, whose input PEFT keeps in
/// f32, is rounded to f32 as there; later ones are f64 (its f64 mean correction promotes the stack).
public struct IncrementalPCA: Sendable {
    /// The number of directions kept (PEFT's `n_components`).
    public let count: Int
    public let features: Int
    /// `[count, features]` row-major, the largest first.
    public private(set) var components: [Double] = []
    public private(set) var singularValues: [Double] = []
    /// Each direction's share of the total variance of the rows seen.
    public private(set) var explainedVarianceRatio: [Double] = []
    public private(set) var samplesSeen = 0
    private var mean: [Double] = []
    private var variance: [Double] = []
    private let seed: UInt64

    /// PEFT's subspace iterations of `svd_lowrank` in its incremental PCA.
    static let iterations = 4

    public init(count: Int, features: Int, seed: UInt64) throws {
        guard count >= 1, count <= features else {
            throw LowRankError(.invalidArgument, "an incremental PCA keeps 1...\(features) directions of \(features) features, got \(count)")
        }
        (self.count, self.features, self.seed) = (count, features, seed)
    }

    /// Folds in a batch `x` of `[rows, features]` (at least `count` rows).
    public mutating func partialFit(_ x: [Float], rows n: Int) throws {
        let d = features
        guard x.count == n * d, n >= count else {
            throw LowRankError(.shapeMismatch, "an incremental PCA of \(count) directions needs at least \(count) rows of \(d) features, got \(x.count) values in \(n) rows")
        }
        let first = samplesSeen == 0
        // scikit-learn's incremental mean and variance, in f64.
        var batchSum = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { batchSum[j] += Double(x[i * d + j]) } }
        let total = samplesSeen + n
        let lastSum = first ? [Double](repeating: 0, count: d) : mean.map { $0 * Double(samplesSeen) }
        let newMean = (0..<d).map { (lastSum[$0] + batchSum[$0]) / Double(total) }
        var unnormalized = [Double](repeating: 0, count: d), correction = [Double](repeating: 0, count: d)
        for j in 0..<d {
            let t = batchSum[j] / Double(n)
            for i in 0..<n {
                let e = Double(x[i * d + j]) - t
                correction[j] += e
                unnormalized[j] += e * e
            }
            unnormalized[j] -= correction[j] * correction[j] / Double(n)
        }
        let newVariance: [Double]
        if first {
            newVariance = unnormalized.map { $0 / Double(total) }
        } else {
            let ratio = Double(samplesSeen) / Double(n)
            newVariance = (0..<d).map { j in
                let gap = lastSum[j] / ratio - batchSum[j]
                return (variance[j] * Double(samplesSeen) + unnormalized[j] + ratio / Double(total) * gap * gap) / Double(total)
            }
        }

        var stacked: [Double]
        let rows: Int
        if first {
            stacked = (0..<n * d).map { Double(Float(Double(x[$0]) - newMean[$0 % d])) }
            rows = n
        } else {
            let batchMean = (0..<d).map { Float(batchSum[$0] / Double(n)) }
            stacked = (0..<count * d).map { singularValues[$0 / d] * components[$0] }
            stacked += (0..<n * d).map { Double(x[$0] - batchMean[$0 % d]) }
            let factor = (Double(samplesSeen) / Double(total) * Double(n)).squareRoot()
            stacked += (0..<d).map { factor * (mean[$0] - Double(batchMean[$0])) }
            rows = count + n + 1
        }
        let q = 2 * count
        let svd = q >= min(rows, d)
            ? try SingularValueDecomposition(stacked, rows: rows, columns: d)
            : try SingularValueDecomposition(randomized: stacked, rows: rows, columns: d, rank: q, iterations: Self.iterations, seed: seed)
        var directions = Array(svd.vt.prefix(count * d)), values = Array(svd.s.prefix(count))
        for k in 0..<count {
            let row = directions[(k * d)..<((k + 1) * d)]
            let largest = row.indices.max { abs(row[$0]) < abs(row[$1]) }!  // the first of equals, as torch.argmax
            if row[largest] < 0 { for j in row.indices { directions[j] = -directions[j] } }
        }
        if first {
            directions = directions.map { Double(Float($0)) }
            values = values.map { Double(Float($0)) }
        }
        let totalVariance = newVariance.reduce(0) { $0 + $1 * Double(total) }
        explainedVarianceRatio = values.map { $0 * $0 / totalVariance }
        (components, singularValues, mean, variance, samplesSeen) = (directions, values, newMean, newVariance, total)
    }

    /// Each direction's cosine similarity with the same one in `previous` (`[count, features]`).
    public func similarity(to previous: [Double]) -> [Double] {
        let d = features
        return (0..<count).map { k in
            let (a, b) = (components[(k * d)..<((k + 1) * d)], previous[(k * d)..<((k + 1) * d)])
            let dot = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
            let norms = (a.reduce(0) { $0 + $1 * $1 } * b.reduce(0) { $0 + $1 * $1 }).squareRoot()
            return dot / max(norms, 1e-8)
        }
    }
}
