import Foundation
import LowRank
import Testing

/// The CPU attention under `medium` for a bfloat16 model (`AttentionOptions.computeDType`), as
/// PyTorch's CPU flash attention computes bfloat16 q, k and v: every block product's operands
/// rounded to bfloat16 (q, k, v and G once; P and dS as they are packed), sums in f32. Each output
/// against float64's attention of the rounded q, k, v and G within what rounding P and dS (2⁻⁸ of
/// each term, as `BFloat16ProductTests` bounds a rounded A) and the f32 sums add; f32 models and
/// `highest` keep the f32 products, bit for bit.
@Suite("CPU attention in bfloat16")
struct AttentionBFloat16Tests {
    static let shapes = CPUAttentionBlocksTests.shapes

    static func run(_ s: CPUAttentionBlocksTests.Shape, _ backend: CPUBackend, computeDType: DType, _ x: [[Float]], _ g: [Float]) throws -> [[Float]] {
        var options = s.options
        options.computeDType = computeDType
        let shapes = Self.shapes(s)
        let inputs = try zip(x, shapes).map { try Tensor($0, shape: $1, on: backend) }
        let starts = s.packed.isEmpty ? [] : [try Tensor(ids: s.starts, on: backend)]
        let forward = try Ops.execute(.attention(options), inputs + starts)
        let backward = try Ops.execute(.attentionBackward(options), [try Tensor(g, shape: shapes[0], on: backend)] + inputs + forward + starts)
        return try (forward + backward).map { try $0.floats() }
    }

    static func shapes(_ s: CPUAttentionBlocksTests.Shape) -> [LowRank.Shape] {
        [[s.rows, s.qHeads, s.headDim], [s.rows, s.kvHeads, s.headDim], [s.rows, s.kvHeads, s.headDim]]
    }

    static func inputs(_ s: CPUAttentionBlocksTests.Shape) -> (x: [[Float]], g: [Float]) {
        let qCount = s.rows * s.qHeads * s.headDim, kvCount = s.rows * s.kvHeads * s.headDim
        return ([randomValues(qCount, seed: 510, scale: 3), randomValues(kvCount, seed: 511, scale: 3), randomValues(kvCount, seed: 512)],
                randomValues(qCount, seed: 513))
    }

    @Test(arguments: shapes)
    func withinRoundingOfBFloat16Operands(_ s: CPUAttentionBlocksTests.Shape) throws {
        if !CPUBackend.hasBFloat16DotProducts { try Test.cancel("this CPU has no AVX-512 BF16: attention stays f32") }
        let (x, g) = Self.inputs(s)
        let backend = CPUBackend(threads: 2, matmulPrecision: .medium)
        let got = try Self.run(s, backend, computeDType: .bf16, x, g)
        #expect(try Self.run(s, CPUBackend(threads: 1, matmulPrecision: .medium), computeDType: .bf16, x, g) == got, "one thread and two")
        #expect(try Self.run(s, backend, computeDType: .f32, x, g) != got, "the products are bfloat16 ones")

        let reference = BFloat16AttentionReference(s, x: x, g: g)
        for (i, name) in ["out", "logsumexp", "dq", "dk", "dv"].enumerated() {
            let worst = zip(got[i], zip(reference.values[i], reference.bounds[i])).reduce(0.0) { worst, element in
                let (value, (exact, bound)) = element
                return max(worst, abs(Double(value) - exact) / bound)
            }
            print("\(name) at \(s.testDescription): \(worst) of the bound")
            #expect(worst <= 1, "\(name): \(worst) of the rounding bound")
        }
    }

    /// `highest`, or an f32 model under `medium`: the f32 products, whatever computeDType says.
    @Test func keepsF32ProductsElsewhere() throws {
        let s = Self.shapes[2]
        let (x, g) = Self.inputs(s)
        let highest = CPUBackend(threads: 2, matmulPrecision: .highest)
        let f32 = try Self.run(s, highest, computeDType: .f32, x, g)
        #expect(try Self.run(s, highest, computeDType: .bf16, x, g) == f32, "highest")
        #expect(try Self.run(s, CPUBackend(threads: 2, matmulPrecision: .medium), computeDType: .f32, x, g) == f32, "an f32 model at medium")
    }
}

/// Float64 attention of bfloat16-rounded q, k, v and G (G unrounded in `Σ G⊙out`, as the op forms
/// it), with each element's bound on the bfloat16 products' difference from it:
/// - out: P's rounding, `2⁻⁸·Σ_j P_ij·|v_j|`, plus f32's: the scores' sums, `δ_i = scale·(d + 2)·2⁻²⁴·max_j Σ|q·k|`,
///   move P by `2·δ_i` relatively, and P·v's sum over n keys adds `(n + 2)·2⁻²⁴` of the same;
/// - logsumexp: `δ_i` and its own f32 rounding;
/// - dq, dk: per term `T_ij = (2⁻⁸ + ε_i)·|dS_ij| + P_ij·(E_dP_ij + E_Δ_i)`, dS's rounding, P's relative error
///   `ε_i = 2·δ_i + 2⁻²¹`, `G·vᵀ`'s f32 sum `E_dP` and `Σ G⊙out`'s error from out's bound `E_Δ`;
///   `scale·Σ_j T_ij·|k_j|` (dq) and `scale·Σ_i T_ij·|q_i|` (dk), plus their f32 sums;
/// - dv: `Σ_i (2⁻⁸ + ε_i)·P_ij·|G_i|` plus its f32 sum.
/// Each bound is widened by 1% for the second-order terms.
struct BFloat16AttentionReference {
    /// out, logsumexp, dq, dk, dv, as the op lays them out.
    var values: [[Double]]
    var bounds: [[Double]]

    init(_ s: CPUAttentionBlocksTests.Shape, x: [[Float]], g gradient: [Float]) {
        let (t, hq, hkv, d) = (s.rows, s.qHeads, s.kvHeads, s.headDim), group = hq / hkv
        let rounded = { (values: [Float]) in values.map { Double(floatFromBF16(bf16Bits($0))) } }
        let (q, k, v, g) = (rounded(x[0]), rounded(x[1]), rounded(x[2]), rounded(gradient))
        let scale = 1 / Double(Float(d).squareRoot()), u = 0x1p-24, bf = 0x1p-8
        let starts = s.starts, sums = Double(group * t + 2) * u  // dk's and dv's sums over every query head and row of a group
        values = [[Double](repeating: 0, count: t * hq * d), [Double](repeating: 0, count: t * hq)] + [t * hq * d, t * hkv * d, t * hkv * d].map { [Double](repeating: 0, count: $0) }
        bounds = values
        let qAt = { (i: Int, h: Int) in (i * hq + h) * d }, kvAt = { (j: Int, h: Int) in (j * hkv + h / group) * d }
        for h in 0..<hq {
            for i in 0..<t {
                let keys = Int(starts[i])...i
                var scores = keys.map { j in scale * (0..<d).reduce(0.0) { $0 + q[qAt(i, h) + $1] * k[kvAt(j, h) + $1] } }
                let delta = scale * Double(d + 2) * u * keys.map { j in (0..<d).reduce(0.0) { $0 + abs(q[qAt(i, h) + $1] * k[kvAt(j, h) + $1]) } }.max()!
                let largest = scores.max()!, sum = scores.reduce(0.0) { $0 + exp($1 - largest) }
                scores = scores.map { exp($0 - largest) / sum }  // P
                let n = Double(keys.count), epsilon = 2 * delta + 0x1p-21
                let outError = bf + 2 * delta + (n + 2) * u
                var outBounds = [Double](repeating: 0, count: d)
                for c in 0..<d {
                    let terms = zip(keys, scores).map { j, p in (p * v[kvAt(j, h) + c], p * abs(v[kvAt(j, h) + c])) }
                    values[0][qAt(i, h) + c] = terms.reduce(0) { $0 + $1.0 }
                    outBounds[c] = outError * terms.reduce(0) { $0 + $1.1 }
                    bounds[0][qAt(i, h) + c] = 1.01 * outBounds[c]
                }
                let lse = largest + log(sum)
                values[1][i * hq + h] = lse
                bounds[1][i * hq + h] = 1.01 * (delta + 4 * u * (abs(lse) + 1))
                // Backward.
                let out = values[0][qAt(i, h)..<qAt(i, h) + d]
                let gRow = (0..<d).map { Double(gradient[qAt(i, h) + $0]) }
                let rowDelta = zip(gRow, out).reduce(0) { $0 + $1.0 * $1.1 }
                let deltaError = zip(gRow, outBounds).reduce(0) { $0 + abs($1.0) * $1.1 } + Double(d + 2) * u * zip(gRow, out).reduce(0) { $0 + abs($1.0 * $1.1) }
                for (j, p) in zip(keys, scores) {
                    let dP = (0..<d).reduce(0.0) { $0 + g[qAt(i, h) + $1] * v[kvAt(j, h) + $1] }
                    let dPError = Double(d + 2) * u * (0..<d).reduce(0.0) { $0 + abs(g[qAt(i, h) + $1] * v[kvAt(j, h) + $1]) }
                    let dS = p * (dP - rowDelta), term = (bf + epsilon + 4 * u) * abs(dS) + p * (dPError + deltaError)
                    for c in 0..<d {
                        let (kc, qc, gc) = (k[kvAt(j, h) + c], q[qAt(i, h) + c], g[qAt(i, h) + c])
                        values[2][qAt(i, h) + c] += scale * dS * kc
                        bounds[2][qAt(i, h) + c] += 1.01 * scale * (term * abs(kc) + (n + 2) * u * abs(dS * kc))
                        values[3][kvAt(j, h) + c] += scale * dS * qc
                        bounds[3][kvAt(j, h) + c] += 1.01 * scale * (term * abs(qc) + sums * abs(dS * qc))
                        values[4][kvAt(j, h) + c] += p * gc
                        bounds[4][kvAt(j, h) + c] += 1.01 * (bf + epsilon + sums) * p * abs(gc)
                    }
                }
            }
        }
    }
}
