import LowRank
@testable import LowRankVulkan
import Testing

/// The cooperative-matrix GEMM: its tile and path choice, checked without such a device, and its
/// results against the CPU backend on a device that has cooperative matrices (elsewhere that test is
/// cancelled; `tools/coopmat-check.sh` runs `lowrank check` on Debian sid's lavapipe, which has them).
@Suite struct CoopmatTests {
    /// This machine's first Vulkan device's description, to vary.
    private func deviceInfo() throws -> VulkanDeviceInfo {
        let backend = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        return backend.info
    }

    /// A backend of its own on that device (with validation), so that its path counts and precision
    /// setting are not shared with tests running beside it.
    private func ownBackend() throws -> VulkanBackend {
        let shared = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        return try VulkanBackend(instance: shared.instance, index: shared.info.index)
    }

    private static func shape(_ m: Int, _ n: Int, _ k: Int, a: String = "f16", c: String = "f32", scope: String = "subgroup")
        -> VulkanDeviceInfo.CooperativeMatrixShape {
        .init(m: m, n: n, k: k, a: a, b: a, c: c, result: c, saturating: false, scope: scope)
    }

    @Test func tileFollowsTheDeviceShapes() throws {
        var info = try deviceInfo()
        info.vendorID = 0x10DE
        info.features.cooperativeMatrix = true
        info.features.shaderFloat16 = true
        info.features.vulkanMemoryModel = true
        info.features.fullSubgroups = true
        info.limits.subgroupSize = 32
        info.limits.maxWorkgroupInvocations = 1024
        info.limits.maxComputeSharedMemoryBytes = 49152
        // Lavapipe's one f16 shape, then a GPU's list: 16×16×16 is preferred to larger or integer shapes.
        info.cooperativeMatrixShapes = [Self.shape(8, 8, 8), Self.shape(8, 8, 8, a: "s8", c: "s32"), Self.shape(8, 8, 8, c: "f16")]
        let small = try CoopmatTile.choose(for: info).get()
        #expect(small.shape == Self.shape(8, 8, 8) && small.bk == 32 && small.workgroupSize == 128
            && "\(small)" == "64×64×32 in 8×8×8, 32×32 a subgroup")
        info.cooperativeMatrixShapes = [Self.shape(16, 8, 16), Self.shape(16, 16, 16), Self.shape(32, 8, 16), Self.shape(16, 16, 32, a: "s8", c: "s32")]
        // ggml-vulkan's large warptile: a 4×4 grid of accumulators a subgroup, 2×2 subgroups.
        let large = try CoopmatTile.choose(for: info).get()
        #expect(large.shape == Self.shape(16, 16, 16) && (large.bm, large.bn, large.bk, large.wm, large.wn) == (128, 128, 32, 64, 64)
            && large.sharedBytes <= 49152)
        var lessShared = info
        lessShared.limits.maxComputeSharedMemoryBytes = 16384
        let smaller = try CoopmatTile.choose(for: lessShared).get()
        #expect((smaller.bm, smaller.wm) == (64, 32) && smaller.sharedBytes <= 16384, "a 2×2 grid where 4×4 does not fit")

        // ggml-vulkan's small, medium and large tiles for skinny products (a LoRA rank on one side).
        let sized = [(16, 4096), (4096, 32), (48, 4096), (64, 65), (65, 65)].map { large.sized(m: $0.0, n: $0.1) }
        #expect(sized.map { "\($0)" } == ["32×32×32 in 16×16×16, 16×16 a subgroup", "32×32×32 in 16×16×16, 16×16 a subgroup",
                                          "64×64×32 in 16×16×16, 32×32 a subgroup", "64×64×32 in 16×16×16, 32×32 a subgroup", "\(large)"])
        #expect(sized.allSatisfy { $0.workgroupSize == large.workgroupSize && $0.sharedBytes <= large.sharedBytes })
        #expect(smaller.sized(m: 4096, n: 4096) == smaller && smaller.sized(m: 40, n: 4096) == smaller)

        var noF32 = info
        noF32.cooperativeMatrixShapes = [Self.shape(16, 16, 16, c: "f16"), Self.shape(16, 16, 16, scope: "workgroup")]
        #expect(throws: CoopmatUnavailable.self) { try CoopmatTile.choose(for: noF32).get() }
        var intel = info
        intel.vendorID = 0x8086
        intel.limits.minSubgroupSize = 8
        #expect(throws: CoopmatUnavailable.self) { try CoopmatTile.choose(for: intel).get() }
        intel.limits.minSubgroupSize = 16  // Xe2
        #expect(throws: Never.self) { try CoopmatTile.choose(for: intel).get() }
        var smallShared = info
        smallShared.limits.maxComputeSharedMemoryBytes = 8192
        #expect(throws: CoopmatUnavailable.self) { try CoopmatTile.choose(for: smallShared).get() }
        var none = info
        none.features.cooperativeMatrix = false
        #expect(throws: CoopmatUnavailable.self) { try CoopmatTile.choose(for: none).get() }
    }

    @Test func pathFollowsThePrecisionPolicy() throws {
        var info = try deviceInfo()
        info.features.cooperativeMatrix = true
        info.features.shaderFloat16 = true
        info.features.vulkanMemoryModel = true
        info.features.fullSubgroups = true
        info.vendorID = 0x10DE
        info.cooperativeMatrixShapes = [Self.shape(16, 16, 16)]
        let tile = try CoopmatTile.choose(for: info).get()
        func path(_ a: DType, _ b: DType, _ precision: MatmulPrecision = .highest, extras: Bool = false, tile: CoopmatTile? = tile) -> MatmulPath {
            .choose(tile: tile, scalar: .large, precision: precision, a: a, b: b, fusedExtras: extras)
        }
        let scalar = MatmulPath.scalar(.large)
        #expect(path(.f16, .f16) == .coopmat(tile) && path(.bf16, .f16) == .coopmat(tile) && path(.bf16, .bf16) == .coopmat(tile))
        #expect(path(.f32, .f32) == scalar && path(.f32, .bf16) == scalar && path(.f16, .f32) == scalar)
        #expect(path(.f32, .f32, .high) == .coopmat(tile) && path(.f32, .bf16, .high) == .coopmat(tile))
        #expect(path(.f16, .f16, extras: true) == scalar && path(.f32, .nf4) == scalar && path(.f32, .q4_0, .high) == .coopmat(tile))
        // A quantized B is dequantized to f16 in shared memory, as bitsandbytes dequantizes to a 16-bit compute dtype.
        #expect([DType.nf4, .nf4DoubleQuant, .q8_0, .q4_0].allSatisfy { path(.f16, $0) == .coopmat(tile) && path(.bf16, $0) == .coopmat(tile) })
        // The GGML types the engine only reads decode on the scalar path.
        #expect(path(.f16, .q4_K) == scalar && path(.bf16, .q6_K) == scalar)
        #expect(path(.f16, .f16, tile: nil) == scalar)
    }

    /// Without cooperative matrices (bookworm's lavapipe) every matmul stays on the scalar kernel.
    @Test func devicesWithoutCooperativeMatricesKeepTheScalarPath() throws {
        let backend = try ownBackend()
        guard case .failure = backend.coopmat else { try Test.cancel("\(backend.info.name) has cooperative matrices") }
        backend.matmulPrecision = .high
        let x = try Tensor(randomValues(64 * 32, seed: 1, dtype: .f16), shape: [64, 32], dtype: .f16, on: backend)
        _ = try Ops.matmul(x, x, transposeB: true).floats()
        _ = try Ops.matmul(try Ops.cast(x, to: .f32), try Ops.cast(x, to: .f32), transposeB: true).floats()
        #expect(backend.drainMatmulPaths() == [MatmulPath.scalar(.medium): 2])
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// Every form, operand dtype, bias and accumulation the coopmat kernel is chosen for, at every tile size and shapes that
    /// are not multiples of the tiles, against the CPU backend: within (K + 2)·2⁻²⁴ of Σ|a·b| + |bias| + |C|
    /// for 16-bit operands (exact products, f32 sums), 2⁻¹⁰ more for f32 operands rounded to f16 under `high`.
    @Test(arguments: [DType.f16, .bf16, .f32])
    func coopmatMatchesTheCPU(_ dtype: DType) throws {
        let backend = try ownBackend()
        guard case .success(let tile) = backend.coopmat else { try Test.cancel("\(backend.info.name): no cooperative matrices") }
        backend.matmulPrecision = .high
        let cpu = Self.exactCPU()
        // The large, small and medium tile (ggml-vulkan's choice by the shorter side).
        let forms = [(false, true), (false, false), (true, false)]
        for ((m, n, k), (transposeA, transposeB)) in [(77, 70, 131), (20, 70, 131), (50, 70, 131)].flatMap({ s in forms.map { (s, $0) } }) {
            for (bias, accumulate) in [(false, false), (true, false), (false, true)] {
                let aShape: Shape = transposeA ? [k, m] : [m, k], bShape: Shape = transposeB ? [n, k] : [k, n]
                // Beyond f16's range where the dtype allows, so that the per-tile scaling matters.
                let (scaleA, scaleB): (Float, Float) = dtype == .f16 ? (300, 0.01) : (1e6, 1e-6)
                let a = randomValues(aShape.count, seed: 1, dtype: dtype, scale: scaleA), b = randomValues(bShape.count, seed: 2, dtype: dtype, scale: scaleB)
                let biasValues = randomValues(n, seed: 3, dtype: dtype), start = randomValues(m * n, seed: 4)
                func run(_ on: any Backend) throws -> [Float] {
                    let ta = try Tensor(a, shape: aShape, dtype: dtype, on: on), tb = try Tensor(b, shape: bShape, dtype: dtype, on: on)
                    if accumulate {
                        let c = try Tensor(start, shape: [m, n], on: on)
                        try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: transposeB, accumulatingInto: c)
                        return try c.floats()
                    }
                    let tBias = bias ? try Tensor(biasValues, shape: [n], dtype: dtype, on: on) : nil
                    return try Ops.matmul(ta, tb, transposeA: transposeA, transposeB: transposeB, bias: tBias, outputDType: .f32).floats()
                }
                _ = backend.drainMatmulPaths()
                let got = try run(backend), reference = try run(cpu)
                #expect(backend.drainMatmulPaths() == [.coopmat(tile.sized(m: m, n: n)): 1])
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var magnitude = (bias ? abs(Double(biasValues[j])) : 0) + (accumulate ? abs(Double(start[i * n + j])) : 0)
                        for p in 0..<k {
                            let x = transposeA ? a[p * m + i] : a[i * k + p], y = transposeB ? b[j * k + p] : b[p * n + j]
                            magnitude += abs(Double(x) * Double(y))
                        }
                        worst = max(worst, abs(Double(got[i * n + j]) - Double(reference[i * n + j])) / magnitude)
                    }
                }
                // Both results are within (K + 2)·2⁻²⁴ of the exact one (the CPU's f32 path included).
                let bound = 2 * Double(k + 2) * 0x1p-24 + (dtype == .f32 ? 0x1p-10 : 0)
                #expect(worst <= bound, "\(dtype) transposeA \(transposeA) transposeB \(transposeB) bias \(bias) accumulate \(accumulate)")
            }
        }
        try backend.synchronize()
        let messages = try backend.drainValidationMessages()
        #expect(messages.isEmpty, "validation messages:\n\(messages.joined(separator: "\n"))")
    }

    /// A block-quantized B in both forms it has in training (`x·Wᵀ`, `G·W`), with a bias and accumulation,
    /// against the CPU backend (which multiplies the exact dequantized values in f32): within
    /// 2⁻¹¹ + (K + 2)·2⁻²³ of Σ|a·b|, each dequantized value rounded once to f16 after its tile's scaling.
    /// NF4's first shape has rows (K = 131) that start off the 8-element runs, so B loads element by
    /// element; the second's are whole runs, over 544 blocks (three nested blocks of double quantization).
    /// GGML's formats need rows of whole 32-element blocks, so theirs are edges in M and N only.
    @Test(arguments: [DType.nf4, .nf4DoubleQuant, .q8_0, .q4_0])
    func quantizedBMatchesTheCPU(_ format: DType) throws {
        let backend = try ownBackend()
        guard case .success(let tile) = backend.coopmat else { try Test.cancel("\(backend.info.name): no cooperative matrices") }
        let cpu = Self.exactCPU()
        let shapes = format == .q8_0 || format == .q4_0 ? [(77, 96, 160), (40, 160, 256)] : [(77, 70, 131), (40, 136, 256)]
        for (m, n, k) in shapes {
            for transposeB in [true, false] {
                for (bias, accumulate) in [(false, false), (true, false), (false, true)] {
                    let bShape: Shape = transposeB ? [n, k] : [k, n]
                    let a = randomValues(m * k, seed: 11, dtype: .f16, scale: 3), b = randomValues(bShape.count, seed: 12, scale: 0.05)
                    let biasValues = randomValues(n, seed: 13, dtype: .f16), start = randomValues(m * n, seed: 14)
                    func run(_ on: any Backend) throws -> [Float] {
                        let ta = try Tensor(a, shape: [m, k], dtype: .f16, on: on), tb = try Tensor(b, shape: bShape, dtype: format, on: on)
                        if accumulate {
                            let c = try Tensor(start, shape: [m, n], on: on)
                            try Ops.matmul(ta, tb, transposeB: transposeB, accumulatingInto: c)
                            return try c.floats()
                        }
                        let tBias = bias ? try Tensor(biasValues, shape: [n], dtype: .f16, on: on) : nil
                        return try Ops.matmul(ta, tb, transposeB: transposeB, bias: tBias, outputDType: .f32).floats()
                    }
                    _ = backend.drainMatmulPaths()
                    let got = try run(backend), reference = try run(cpu)
                    #expect(backend.drainMatmulPaths() == [.coopmat(tile.sized(m: m, n: n)): 1])
                    let dequantized = try Ops.cast(try Tensor(b, shape: bShape, dtype: format, on: cpu), to: .f32).floats()
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var magnitude = (bias ? abs(Double(biasValues[j])) : 0) + (accumulate ? abs(Double(start[i * n + j])) : 0)
                            for p in 0..<k {
                                magnitude += abs(Double(a[i * k + p]) * Double(dequantized[transposeB ? j * k + p : p * n + j]))
                            }
                            worst = max(worst, abs(Double(got[i * n + j]) - Double(reference[i * n + j])) / max(magnitude, .leastNonzeroMagnitude))
                        }
                    }
                    #expect(worst <= 0x1p-11 + 2 * Double(k + 2) * 0x1p-24, "\(format) \(m)×\(n)×\(k) transposeB \(transposeB) bias \(bias) accumulate \(accumulate)")
                }
            }
        }
        try backend.synchronize()
        let messages = try backend.drainValidationMessages()
        #expect(messages.isEmpty, "validation messages:\n\(messages.joined(separator: "\n"))")
    }

    /// The CPU reference at `highest`: the bounds are against exact products, where the CPU's default
    /// (`medium`) rounds the activations multiplying a bf16 weight.
    private static func exactCPU() -> CPUBackend { CPUBackend(matmulPrecision: .highest) }

    /// One adapted layer's inputs (T = 37, d_in = 96, d_out = 80, r = 8): x, W and G in `dtype`, A and B
    /// in f32 as adapters are kept, the same values on every backend.
    private struct AdapterLayer {
        var x, w, a, b, g: Tensor
        init(_ dtype: DType, on backend: any Backend) throws {
            let (t, dIn, dOut, r) = (37, 96, 80, 8)
            x = try Tensor(randomValues(t * dIn, seed: 1, dtype: dtype), shape: [t, dIn], dtype: dtype, on: backend)
            w = try Tensor(randomValues(dOut * dIn, seed: 2, dtype: dtype), shape: [dOut, dIn], dtype: dtype, on: backend)
            a = try Tensor(randomValues(r * dIn, seed: 3), shape: [r, dIn], on: backend)
            b = try Tensor(randomValues(dOut * r, seed: 4), shape: [dOut, r], on: backend)
            g = try Tensor(randomValues(t * dOut, seed: 5, dtype: dtype), shape: [t, dOut], dtype: dtype, on: backend)
        }
    }

    /// Runs `outputs` on a backend of its own with cooperative matrices and on the CPU backend: the
    /// coopmat path must have run `coopmatProducts` matmuls, and each output must be within the golden
    /// bound of the CPU's.
    private func compareWithTheCPU(_ dtype: DType, coopmatProducts: Int, _ outputs: (AdapterLayer) throws -> [(String, Tensor)]) throws {
        let backend = try ownBackend()
        guard case .success(let tile) = backend.coopmat else { try Test.cancel("\(backend.info.name): no cooperative matrices") }
        let got = try outputs(try AdapterLayer(dtype, on: backend)).map { ($0.0, try $0.1.floats()) }
        let reference = try outputs(try AdapterLayer(dtype, on: Self.exactCPU())).map { try $0.1.floats() }
        #expect(backend.drainMatmulPaths().filter { $0.key == .coopmat(tile.sized(m: 37, n: 80)) || $0.key == .coopmat(tile.sized(m: 37, n: 96)) }
            .values.reduce(0, +) == coopmatProducts)
        for ((name, values), ref) in zip(got, reference) {
            #expect(relativeError(values, ref.map(Double.init)) <= GoldenCase.bound, "\(dtype) \(name)")
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// The fused LoRA products with 16-bit activations and weights and f32 adapters, under the default
    /// precision: the base products (`x·Wᵀ + s·u·Bᵀ`, `G·W + du·A` with dropout on the second term) take
    /// the coopmat path, their f32 second products summed in f32 FMAs.
    @Test(arguments: [DType.f16, .bf16])
    func loraProductsMatchTheCPU(_ dtype: DType) throws {
        let options = LoRAOptions(scale: 2, dropout: 0.25, seed: 7, outputDType: .f32)
        try compareWithTheCPU(dtype, coopmatProducts: 2) { l in
            let (y, u) = try Ops.loraForward(x: l.x, weight: l.w, bias: nil, a: l.a, b: l.b, options: options)
            let (dx, _, _) = try Ops.loraBackward(gradOutput: l.g, x: l.x, weight: l.w, a: l.a, b: l.b, u: u, options: options)
            return [("y", y), ("dx", dx)]
        }
    }

    /// DoRA's products with 16-bit activations and weights: the forward (x·Wᵀ with the LoRA term and
    /// the compose) takes the coopmat path, the backward's (g⊙G)·W, an f32 operand, the scalar one.
    @Test(arguments: [DType.f16, .bf16])
    func doraProductsMatchTheCPU(_ dtype: DType) throws {
        let options = DoRAOptions(lora: LoRAOptions(scale: 2, outputDType: .f32))
        try compareWithTheCPU(dtype, coopmatProducts: 1) { l in
            let m = try Tensor(randomValues(80, seed: 6).map { 1 + $0 / 4 }, shape: [80], on: l.x.backend)
            let forward = try Ops.doraForward(x: l.x, weight: l.w, bias: nil, a: l.a, b: l.b, magnitude: m,
                                              weightNormSquared: try Ops.rowSumOfSquares(l.w), options: options)
            let (dx, _, _, dm) = try Ops.doraBackward(gradOutput: l.g, x: l.x, weight: l.w, a: l.a, b: l.b, forward: forward, options: options)
            return [("y", forward.y), ("dx", dx), ("dm", try #require(dm))]
        }
    }
}
