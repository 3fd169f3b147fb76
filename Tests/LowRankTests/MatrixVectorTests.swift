import Foundation
import LowRank
import Testing
@testable import LowRankVulkan

/// The matrix-vector kernel (`Shaders/matmul_vec.comp`), which computes products of a few rows (a
/// decoding step's), against the CPU backend: every A dtype and row count, every block-quantized B, and
/// the fused epilogues of LoRA and DoRA.
@Suite("matrix-vector matmul")
struct MatrixVectorTests {
    private func ownBackend() throws -> VulkanBackend {
        let shared = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        return try VulkanBackend(instance: shared.instance, index: shared.info.index)
    }

    /// The largest of |got − reference| / (Σ|a·b| + |extra|) over C, `b` given as the dense [N, K] values.
    private func worstError(_ got: [Float], _ reference: [Float], a: [Float], b: [Float], extra: [Float]?, m: Int, n: Int, k: Int,
                            transposeA: Bool) -> Double {
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var magnitude = extra.map { abs(Double($0[j])) } ?? 0
                for p in 0..<k { magnitude += abs(Double(transposeA ? a[p * m + i] : a[i * k + p]) * Double(b[j * k + p])) }
                worst = max(worst, abs(Double(got[i * n + j]) - Double(reference[i * n + j])) / max(magnitude, .leastNormalMagnitude))
            }
        }
        return worst
    }

    @Test func rowsChooseTheKernelAndItsShape() throws {
        #expect([1, 2, 3, 5, 8].map { MatrixVectorTile.choose(m: $0).rows } == [1, 2, 4, 8, 8])
        let backend = try ownBackend()
        let w = try Tensor(randomValues(30 * 40, seed: 2), shape: [30, 40], on: backend)
        _ = try Ops.matmul(try Tensor(randomValues(9 * 40, seed: 1), shape: [9, 40], on: backend), w, transposeB: true).floats()
        #expect(backend.drainMatmulPaths().keys.allSatisfy { if case .matrixVector = $0 { false } else { true } })
        _ = try Ops.matmul(try Tensor(randomValues(8 * 40, seed: 1), shape: [8, 40], on: backend), w, transposeB: true).floats()
        #expect(backend.drainMatmulPaths() == [.matrixVector(.choose(m: 8)): 1])
        // G·W (B not in the nn.Linear layout) stays on the tiles.
        _ = try Ops.matmul(try Tensor(randomValues(2 * 30, seed: 3), shape: [2, 30], on: backend), w).floats()
        #expect(backend.drainMatmulPaths().keys.allSatisfy { if case .scalar = $0 { true } else { false } })
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// Every float dtype, 1 to 8 rows, A in both layouts, with bias or accumulation, K off the 8-element
    /// runs and the quad loads: within 2·(K + 2)·2⁻²⁴ of Σ|a·b| + |bias| (f32 sums of exact products on both).
    @Test(arguments: [DType.f32, .f16, .bf16])
    func floatOperandsMatchTheCPU(_ dtype: DType) throws {
        let backend = try ownBackend()
        let cpu = try Engine.backend(.cpu)
        for (m, n, k) in [(1, 37, 131), (3, 70, 64), (8, 9, 259)] {
            for transposeA in [false, true] {
                for (bias, accumulate) in [(false, false), (true, false), (false, true)] {
                    let a = randomValues(m * k, seed: 1, dtype: dtype), b = randomValues(n * k, seed: 2, dtype: dtype)
                    let biasValues = randomValues(n, seed: 3, dtype: dtype), start = randomValues(m * n, seed: 4)
                    func run(_ on: any Backend) throws -> [Float] {
                        let ta = try Tensor(a, shape: transposeA ? [k, m] : [m, k], dtype: dtype, on: on)
                        let tb = try Tensor(b, shape: [n, k], dtype: dtype, on: on)
                        if accumulate {
                            let c = try Tensor(start, shape: [m, n], on: on)
                            try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: true, accumulatingInto: c)
                            return try c.floats()
                        }
                        let tBias = bias ? try Tensor(biasValues, shape: [n], dtype: dtype, on: on) : nil
                        return try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: true, bias: tBias, outputDType: .f32).floats()
                    }
                    _ = backend.drainMatmulPaths()
                    let got = try run(backend), reference = try run(cpu)
                    #expect(backend.drainMatmulPaths() == [.matrixVector(.choose(m: m)): 1])
                    let extra: [Float]? = bias ? biasValues : nil
                    let worst = worstError(got, reference, a: a, b: b, extra: extra, m: m, n: n, k: k, transposeA: transposeA)
                    let startError = accumulate ? zip(got, reference).map { Double(abs($0 - $1)) }.max()! / 4 : 0
                    #expect(max(worst, startError) <= 2 * Double(k + 2) * 0x1p-24,
                            "\(dtype) \(m)×\(n)×\(k) transposeA \(transposeA) bias \(bias) accumulate \(accumulate)")
                }
            }
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// Every block-quantized B, dequantized a run at a time where rows are whole runs and element by
    /// element where they are not (NF4 with K = 131), against the CPU backend, which multiplies the same
    /// dequantized values in f32. NF4 is quantized here; the GGML types come as gguf-py wrote them
    /// (`GGUFQuantizationTests`' fixture), as the engine only reads them.
    @Test(arguments: DType.quantized)
    func quantizedBMatchesTheCPU(_ format: DType) throws {
        let backend = try ownBackend()
        let cpu = try Engine.backend(.cpu)
        let nf4 = format.quantFormat == .nf4 || format.quantFormat == .nf4DoubleQuant
        let file = try GGUFQuantizationTests.fixture()
        func weight(_ n: Int, _ k: Int, on: any Backend) throws -> Tensor {
            nf4 ? try Tensor(randomValues(n * k, seed: 12, scale: 0.05), shape: [n, k], dtype: format, on: on)
                : try GGUFQuantizationTests.weight(format, from: file, on: on).0
        }
        let fixtureShape = nf4 ? nil : try weight(0, 0, on: cpu).shape
        let shapes = fixtureShape.map { [(1, $0[0], $0[1]), (5, $0[0], $0[1])] } ?? [(1, 20, 131), (2, 40, 256)]
        for (m, n, k) in shapes {
            let a = randomValues(m * k, seed: 11, dtype: .f16, scale: 3), bias = randomValues(n, seed: 13)
            func run(_ on: any Backend) throws -> [Float] {
                try Ops.matmul(try Tensor(a, shape: [m, k], dtype: .f16, on: on), try weight(n, k, on: on),
                               transposeB: true, bias: try Tensor(bias, shape: [n], on: on), outputDType: .f32).floats()
            }
            _ = backend.drainMatmulPaths()
            let got = try run(backend), reference = try run(cpu)
            #expect(backend.drainMatmulPaths() == [.matrixVector(.choose(m: m)): 1])
            let dequantized = try Ops.cast(try weight(n, k, on: cpu), to: .f32).floats()
            let worst = worstError(got, reference, a: a, b: dequantized, extra: bias, m: m, n: n, k: k, transposeA: false)
            #expect(worst <= 2 * Double(k + 2) * 0x1p-24, "\(format) \(m)×\(n)×\(k)")
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// A decoding step's LoRA and DoRA layer (one token): `u = x·Aᵀ`, then `x·Wᵀ` with the second
    /// product `s·u·Bᵀ`, DoRA's compose and its inner fused, on the matrix-vector kernel, against the
    /// CPU within the golden bound; the same with the base weight NF4 with double quantization.
    @Test func loraAndDoRAStepsMatchTheCPU() throws {
        let backend = try ownBackend()
        let cpu = try Engine.backend(.cpu)
        let (dIn, dOut, r) = (192, 72, 8)
        let x = randomValues(dIn, seed: 1), w = randomValues(dOut * dIn, seed: 2, scale: 0.1), bias = randomValues(dOut, seed: 3)
        let a = randomValues(r * dIn, seed: 4), b = randomValues(dOut * r, seed: 5), magnitude = randomValues(dOut, seed: 6).map { 1 + $0 / 4 }
        for weightType in [DType.f32, .nf4DoubleQuant] {
            func outputs(_ on: any Backend) throws -> [(String, [Float])] {
                let tx = try Tensor(x, shape: [1, dIn], on: on), tw = try Tensor(w, shape: [dOut, dIn], dtype: weightType, on: on)
                let tBias = try Tensor(bias, shape: [dOut], on: on)
                let ta = try Tensor(a, shape: [r, dIn], on: on), tb = try Tensor(b, shape: [dOut, r], on: on)
                let lora = try Ops.loraForward(x: tx, weight: tw, bias: tBias, a: ta, b: tb, options: LoRAOptions(scale: 2, outputDType: .f32))
                let dora = try Ops.doraForward(x: tx, weight: tw, bias: tBias, a: ta, b: tb, magnitude: try Tensor(magnitude, shape: [dOut], on: on),
                                               weightNormSquared: try Ops.rowSumOfSquares(try Ops.cast(tw, to: .f32)),
                                               options: DoRAOptions(lora: LoRAOptions(scale: 2, outputDType: .f32)))
                return [("lora y", try lora.y.floats()), ("u", try lora.u.floats()), ("dora y", try dora.y.floats())]
            }
            _ = backend.drainMatmulPaths()
            let got = try outputs(backend)
            let paths = backend.drainMatmulPaths()
            // u, the LoRA layer's y and DoRA's x·Aᵀ and y with its compose; DoRA's norm has products of r and d_out rows.
            #expect(paths[.matrixVector(.choose(m: 1))] == 4, "\(paths)")
            for ((name, values), (_, reference)) in zip(got, try outputs(cpu)) {
                #expect(relativeError(values, reference.map(Double.init)) <= GoldenCase.bound, "\(name) \(weightType)")
            }
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }
}
