import COpenBLAS
import Glibc
import LowRankCore

/// A tensor's values widened to float64 (block-quantized ones dequantized), or its ids.
public struct Float64Values: Sendable {
    public var shape: Shape
    public var values: [Double]
    public var ids: [Int32]

    public init(_ values: [Double], shape: Shape) {
        (self.values, self.shape, ids) = (values, shape, [])
    }

    /// The values exactly as the backend holds them (every f32, f16, bf16 or dequantized value is
    /// a double exactly).
    public init(_ t: Tensor) throws {
        shape = t.shape
        if t.dtype == .i32 {
            let bytes = try t.bytes()
            ids = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
            values = []
        } else {
            values = try t.floats().map(Double.init)
            ids = []
        }
    }

    var rows: Int { shape.rows }
    var columns: Int { shape.columns }
}

/// Every forward op computed in float64 from the inputs a backend was given: the exact result
/// up to float64 rounding, against which `Float64Check` measures each step of a plan. Each twin
/// follows the op's definition (`Op.swift`), not a backend's order of operations; products use
/// OpenBLAS's dgemm.
public enum Float64Reference {
    /// The op's outputs in float64, or nil when the op has no twin (backward ops and the optimizer
    /// step: the check measures what a forward pass computes). `prior` gives the outputs' contents
    /// before the op ran, which accumulating ops add to.
    public static func outputs(of op: Op, _ x: [Float64Values], prior: () throws -> [Float64Values]) rethrows -> [[Double]]? {
        switch op {
        case .matmul(let o):
            let a = x[0], b = x[1]
            let (m, k) = o.transposeA ? (a.columns, a.rows) : (a.rows, a.columns)
            let n = o.transposeB ? b.rows : b.columns
            var c = try o.accumulate ? prior()[0].values : [Double](repeating: 0, count: m * n)
            gemm(a.values, transpose: o.transposeA, b.values, transpose: o.transposeB, &c, m: m, n: n, k: k,
                 alpha: Double(o.alpha), beta: o.accumulate ? 1 : 0)
            if o.hasBias { addRows(&c, x[2].values) }
            return [c]
        case .add: return [broadcast(x[0], x[1], +)]
        case .mul: return [broadcast(x[0], x[1], *)]
        case .scale(let factor): return [x[0].values.map { Double(factor) * $0 }]
        case .scaleRows:
            let n = x[0].columns
            return [x[0].values.enumerated().map { $1 * x[1].values[$0 / n] }]
        case .rowSumOfSquares: return [rowSumsOfSquares(x[0])]
        case .rowL2Norm: return [rowSumsOfSquares(x[0]).map { $0.squareRoot() }]
        case .cast: return [x[0].values]
        case .loraForward(let o):
            let (u, branch) = loraBranch(o, x)
            var y = try o.accumulate ? prior()[0].values : linear(x[0], x[1], bias: o.hasBias ? x[4] : nil)
            for i in y.indices { y[i] += branch[i] }
            return [y, u]
        case .doraNorm(let scale):
            let (n, g) = doraNorm(scale: Double(scale), w: x[0], a: x[1], b: x[2], m: x[3], normSquared: x[4])
            return [n, g]
        case .doraForward(let o):
            let (u, lora) = loraBranch(o.lora, x)
            let (n, g) = doraNorm(scale: Double(o.lora.scale), w: x[1], a: x[2], b: x[3], m: x[4], normSquared: x[5])
            let dOut = x[1].rows
            let base = linear(Float64Values(dropped(x[0], o.lora), shape: x[0].shape), x[1], bias: nil)
            var y = linear(x[0], x[1], bias: o.lora.hasBias ? x[6] : nil)
            for i in y.indices { y[i] += (g[i % dOut] - 1) * base[i] + g[i % dOut] * lora[i] }
            return [y, u, n, g] + (o.trainableMagnitude ? [zip(base, lora).map(+)] : [])
        case .doraCompose(let scale):
            let (base, lora, g) = (x[0].values, x[1].values, x[2].values)
            return [base.indices.map { i in
                let gj = g[i % g.count]
                return base[i] + (gj - 1) * base[i] + gj * Double(scale) * lora[i]
            }]
        case .activation(let f): return [x[0].values.map(activation(f))]
        case .gatedActivation(let f): return [zip(x[0].values, x[1].values).map { activation(f)($0) * $1 }]
        case .meanSquaredError:
            return [[zip(x[0].values, x[1].values).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(x[0].values.count)]]
        case .clipCoefficient(let maxNorm): return [[min(1, Double(maxNorm) / (x[0].values[0].squareRoot() + 1e-6))]]
        case .transpose(let axes): return [transpose(x[0], axes)]
        case .embedding:
            let (table, ids) = (x[0], x[1].ids), d = table.columns
            return [ids.flatMap { id in
                (0..<table.rows).contains(Int(id)) ? Array(table.values[Int(id) * d..<(Int(id) + 1) * d]) : Array(repeating: .nan, count: d)
            }]
        case .rmsNorm(let epsilon):
            let d = x[0].columns
            let sum = x.count == 3 ? Float64Values(zip(x[0].values, x[2].values).map(+), shape: x[0].shape) : x[0]
            let rstd = rowSumsOfSquares(sum).map { 1 / ($0 / Double(d) + Double(epsilon)).squareRoot() }
            return [sum.values.enumerated().map { x[1].values[$0 % d] * $1 * rstd[$0 / d] }, rstd] + (x.count == 3 ? [sum.values] : [])
        case .rope(let inverse):
            return ([x[0]] + x.dropFirst(3)).map { rope($0, frequencies: x[1].values, positions: x[2].ids, inverse: inverse) }
        case .attention(let o): return attention(o, q: x[0], k: x[1], v: x[2], starts: o.packed ? x[3].ids : nil)
        case .cachedAttention(let scale):
            let operands = CachedAttentionOperands(x), past = Int(operands.past.ids[0])
            let joined = { (cache: Float64Values, rows: Float64Values) in
                Float64Values(Array(cache.values.prefix(past * cache.columns * cache.shape[1])) + rows.values,
                              shape: [past + rows.shape[0], rows.shape[1], rows.shape[2]])
            }
            return attention(AttentionOptions(sequenceLength: max(operands.q.shape[0], 1), scale: scale), q: operands.q,
                             k: joined(operands.keyCache, operands.k), v: joined(operands.valueCache, operands.v), past: past)
        case .crossEntropy(let ignoreIndex): return crossEntropy(ignoreIndex, logits: x[0], labels: x[1].ids)
        case .linearCrossEntropy(let o):
            let (hidden, weight) = (x[0], x[1])
            var logits = [Double](repeating: 0, count: hidden.rows * weight.rows)
            gemm(hidden.values, transpose: false, weight.values, transpose: true, &logits, m: hidden.rows, n: weight.rows, k: hidden.columns, alpha: 1, beta: 0)
            return crossEntropy(o.ignoreIndex, logits: Float64Values(logits, shape: [hidden.rows, weight.rows]), labels: x[2].ids)
        case .loraBackward, .doraBackward, .activationBackward, .gatedActivationBackward, .meanSquaredErrorBackward, .embeddingBackward,
             .rmsNormBackward, .attentionBackward, .crossEntropyBackward, .linearCrossEntropyBackward, .adamW,
             .multiTensorAdamW:
            return nil
        }
    }

    /// Row-major `C = alpha·op(A)·op(B) + beta·C` in float64.
    static func gemm(_ a: [Double], transpose ta: Bool, _ b: [Double], transpose tb: Bool, _ c: inout [Double],
                     m: Int, n: Int, k: Int, alpha: Double, beta: Double) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else { for i in c.indices { c[i] *= beta }; return }
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(ta ? m : k), b, blasint(tb ? k : n), beta, &c, blasint(n))
    }

    /// `x·Wᵀ (+ bias)`.
    private static func linear(_ x: Float64Values, _ w: Float64Values, bias: Float64Values?) -> [Double] {
        var y = [Double](repeating: 0, count: x.rows * w.rows)
        gemm(x.values, transpose: false, w.values, transpose: true, &y, m: x.rows, n: w.rows, k: x.columns, alpha: 1, beta: 0)
        if let bias { addRows(&y, bias.values) }
        return y
    }

    private static func addRows(_ c: inout [Double], _ row: [Double]) {
        for i in c.indices { c[i] += row[i % row.count] }
    }

    /// x with the op's inverted-dropout mask applied.
    private static func dropped(_ x: Float64Values, _ o: LoRAOptions) -> [Double] {
        let mask = DropoutMask(probability: o.dropout, seed: o.seed), d = x.columns
        return mask.isIdentity ? x.values : x.values.enumerated().map { $1 * Double(mask.factor(row: $0 / d, column: $0 % d)) }
    }

    /// `u = dropout(x)·Aᵀ` and the branch `scale·u·Bᵀ`, from inputs x, W, A, B.
    private static func loraBranch(_ o: LoRAOptions, _ x: [Float64Values]) -> (u: [Double], branch: [Double]) {
        let (t, r, dOut) = (x[0].rows, x[2].rows, x[1].rows)
        let u = linear(Float64Values(dropped(x[0], o), shape: x[0].shape), x[2], bias: nil)
        var branch = [Double](repeating: 0, count: t * dOut)
        gemm(u, transpose: false, x[3].values, transpose: true, &branch, m: t, n: dOut, k: r, alpha: Double(o.scale), beta: 0)
        return (u, branch)
    }

    /// DoRA's norm from the given `‖W‖²_row` (a constant the caller caches for W), as the op
    /// defines it: `n² = ‖W‖² + 2s·rowsum(B⊙(W·Aᵀ)) + s²·rowsum((B·(A·Aᵀ))⊙B)`, `g = m / max(n, ε)`.
    private static func doraNorm(scale s: Double, w: Float64Values, a: Float64Values, b: Float64Values, m: Float64Values,
                                 normSquared: Float64Values) -> (n: [Double], g: [Double]) {
        let (dOut, dIn, r) = (w.rows, w.columns, a.rows)
        var wa = [Double](repeating: 0, count: dOut * r), aa = [Double](repeating: 0, count: r * r)
        gemm(w.values, transpose: false, a.values, transpose: true, &wa, m: dOut, n: r, k: dIn, alpha: 1, beta: 0)
        gemm(a.values, transpose: false, a.values, transpose: true, &aa, m: r, n: r, k: dIn, alpha: 1, beta: 0)
        var baa = [Double](repeating: 0, count: dOut * r)
        gemm(b.values, transpose: false, aa, transpose: false, &baa, m: dOut, n: r, k: r, alpha: 1, beta: 0)
        let n = (0..<dOut).map { j in
            let cross = (0..<r).reduce(0.0) { $0 + b.values[j * r + $1] * (2 * wa[j * r + $1] + s * baa[j * r + $1]) }
            return max(normSquared.values[j] + s * cross, 0).squareRoot()
        }
        return (n, n.indices.map { m.values[$0] / max(n[$0], Double(DoRAOptions.normEpsilon)) })
    }

    private static func broadcast(_ a: Float64Values, _ b: Float64Values, _ f: (Double, Double) -> Double) -> [Double] {
        a.values.enumerated().map { f($1, b.values[$0 % b.values.count]) }
    }

    private static func rowSumsOfSquares(_ x: Float64Values) -> [Double] {
        let n = x.columns
        return (0..<x.rows).map { row in x.values[row * n..<(row + 1) * n].reduce(0) { $0 + $1 * $1 } }
    }

    private static func activation(_ f: Activation) -> (Double) -> Double {
        switch f {
        case .silu: { $0 / (1 + exp(-$0)) }
        case .gelu: { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
        case .geluTanh: { x in 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))) }
        }
    }

    private static func transpose(_ x: Float64Values, _ axes: [Int]) -> [Double] {
        let dims = x.shape.dims
        var strides = [Int](repeating: 1, count: dims.count)
        for i in stride(from: dims.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * dims[i + 1] }
        let outDims = axes.map { dims[$0] }
        return (0..<x.values.count).map { flat in
            var rest = flat, source = 0
            for i in stride(from: outDims.count - 1, through: 0, by: -1) {
                source += rest % outDims[i] * strides[axes[i]]
                rest /= outDims[i]
            }
            return x.values[source]
        }
    }

    /// Pairs (i, i + D/2) rotated by `position·invFreq[i]`, the angle's product and its cosine
    /// and sine in float64.
    private static func rope(_ x: Float64Values, frequencies: [Double], positions: [Int32], inverse: Bool) -> [Double] {
        let (heads, d) = (x.shape[1], x.shape[2]), half = d / 2
        var y = x.values
        for row in 0..<(x.shape[0] * heads) {
            let position = Double(positions[row / heads]), base = row * d
            for i in 0..<half {
                let angle = position * frequencies[i]
                let (c, s) = (cos(angle), inverse ? -sin(angle) : sin(angle))
                let (x1, x2) = (x.values[base + i], x.values[base + i + half])
                y[base + i] = x1 * c - x2 * s
                y[base + i + half] = x2 * c + x1 * s
            }
        }
        return y
    }

    /// Causal softmax attention over grouped KV heads: out and logsumexp.
    /// `starts`: a packed attention's sequence starts. `past`: keys before the first query, which is at
    /// position past of one sequence.
    private static func attention(_ o: AttentionOptions, q: Float64Values, k: Float64Values, v: Float64Values, starts: [Int32]? = nil,
                                  past: Int = 0) -> [[Double]] {
        let (t, hq, d, hkv) = (q.shape[0], q.shape[1], q.shape[2], k.shape[1])
        let group = hq / hkv, scale = Double(o.scale(headDim: d)), sequence = o.sequenceLength
        var out = [Double](repeating: 0, count: t * hq * d), logsumexp = [Double](repeating: 0, count: t * hq)
        for index in 0..<(t * hq) {
            let (row, h) = (index / hq, index % hq)
            let keys = max(row / sequence * sequence, starts.map { Int($0[row]) } ?? 0)...(row + past)
            let kv = { (j: Int) in (j * hkv + h / group) * d }
            let scores = keys.map { j in (0..<d).reduce(0.0) { $0 + q.values[index * d + $1] * k.values[kv(j) + $1] } * scale }
            let largest = scores.max()!
            let weights = scores.map { exp($0 - largest) }
            let sum = weights.reduce(0, +)
            logsumexp[index] = largest + log(sum)
            for (w, j) in zip(weights, keys) {
                for c in 0..<d { out[index * d + c] += w / sum * v.values[kv(j) + c] }
            }
        }
        return [out, logsumexp]
    }

    /// The mean over rows whose label is not ignored of `logsumexp − logits[label]`, and each row's logsumexp.
    private static func crossEntropy(_ ignoreIndex: Int32, logits: Float64Values, labels: [Int32]) -> [[Double]] {
        let classes = logits.columns
        let logsumexp = (0..<logits.rows).map { row in
            let values = logits.values[row * classes..<(row + 1) * classes]
            let largest = values.max()!
            return largest + log(values.reduce(0) { $0 + exp($1 - largest) })
        }
        let counted = labels.indices.filter { labels[$0] != ignoreIndex }
        let total = counted.reduce(0.0) { sum, row in
            let y = Int(labels[row])
            return sum + ((0..<classes).contains(y) ? logsumexp[row] - logits.values[row * classes + y] : .nan)
        }
        return [[total / Double(counted.count)], logsumexp]
    }
}
