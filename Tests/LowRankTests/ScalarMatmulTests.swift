import Foundation
import LowRank
import Testing
@testable import LowRankVulkan

/// The scalar GEMM (`Shaders/matmul.comp`): its tiles, the split of long K, and both against the CPU.
@Suite("scalar matmul")
struct ScalarMatmulTests {
    private func ownBackend() throws -> VulkanBackend {
        let shared = try #require(try BackendKind.vulkan.open() as? VulkanBackend)
        return try VulkanBackend(instance: shared.instance, index: shared.info.index)
    }

    /// (M, N, K) that select each tile, none a multiple of it.
    static let tileShapes: [(MatmulTile, Int, Int, Int)] = [
        (.large, 130, 133, 37), (.medium, 64, 90, 21), (.small, 20, 45, 33), (.fewRows, 12, 200, 40), (.fewColumns, 150, 16, 19),
    ]

    @Test func tileFollowsTheProblemSize() throws {
        var device = try ownBackend().info
        device.vendorID = 0x10DE
        (device.limits.maxWorkgroupInvocations, device.limits.maxComputeSharedMemoryBytes) = (1024, 49152)
        for (tile, m, n, _) in Self.tileShapes { #expect(MatmulTile.choose(m: m, n: n, device: device) == tile, "\(m)×\(n)") }
        #expect(MatmulTile.choose(m: 4096, n: 4096, device: device) == .large)
        // ggml-vulkan's vendor rules: no large tile on Intel, only the medium one on Apple.
        device.vendorID = 0x8086
        #expect(MatmulTile.choose(m: 4096, n: 4096, device: device) == .medium)
        device.vendorID = 0x106B
        #expect(MatmulTile.choose(m: 20, n: 45, device: device) == .medium && MatmulTile.choose(m: 8, n: 200, device: device) == .medium)
        device.vendorID = 0x1002
        device.limits.maxComputeSharedMemoryBytes = 16384
        #expect(MatmulTile.choose(m: 4096, n: 4096, device: device) == .medium)
        device.limits.maxWorkgroupInvocations = 64
        #expect(MatmulTile.choose(m: 4096, n: 4096, device: device) == .small)
        for tile in [MatmulTile.large, .medium, .small, .fewRows, .fewColumns] {
            // Every thread loads at least one quad of the larger operand tile and owns whole quads of C.
            #expect(tile.tm % 4 == 0 && tile.tn % 4 == 0 && tile.bk % 4 == 0 && max(tile.bm, tile.bn) * tile.bk / 4 >= tile.threads, "\(tile)")
        }
    }

    /// matmul.comp's specialization constants are `MatmulTile`'s, in order, and their defaults the large
    /// tile's (what tools/isa-report.sh compiles, as it sets none).
    @Test func specializationConstantsMirrorTheGLSL() throws {
        let source = try #require(embeddedShaders[Shader.matmul.rawValue])
        let regex = try NSRegularExpression(
            pattern: #"layout\((?:local_size_x_id\s*=\s*(\d+),\s*local_size_x\s*=\s*(\d+)\)\s*in|constant_id\s*=\s*(\d+)\)\s*const\s+uint\s+(\w+)\s*=\s*(\d+))"#)
        let ns = source as NSString
        var constants: [Int: (String, UInt32)] = [:]
        for match in regex.matches(in: source, range: NSRange(location: 0, length: ns.length)) {
            let group = { (i: Int) in match.range(at: i).location == NSNotFound ? nil : ns.substring(with: match.range(at: i)) }
            if let id = group(1), let size = group(2) {
                constants[Int(id)!] = ("local_size_x", UInt32(size)!)
            } else if let id = group(3), let name = group(4), let value = group(5) {
                constants[Int(id)!] = (name, UInt32(value)!)
            }
        }
        #expect(constants.keys.sorted() == Array(0..<MatmulTile.constantNames.count))
        #expect(constants.keys.sorted().map { constants[$0]!.0 } == MatmulTile.constantNames)
        #expect(constants.keys.sorted().map { constants[$0]!.1 } == MatmulTile.large.specialization)
    }

    /// ggml-vulkan's rule: K of 2048 or more, tiles filling at most two thirds of the compute units,
    /// at most 8 ranges, none of them empty.
    @Test func splitKFollowsGgmlVulkansRule() {
        #expect(SplitK.count(tiles: 1, k: 4096, cores: 32) == 8)
        #expect(SplitK.count(tiles: 12, k: 4096, cores: 32) == 2)
        #expect(SplitK.count(tiles: 20, k: 4096, cores: 32) == 3)
        #expect(SplitK.count(tiles: 30, k: 4096, cores: 32) == 1)
        #expect(SplitK.count(tiles: 1, k: 2047, cores: 32) == 1)
        // ⌈2304 / 8⌉ rounds up to 512, so 8, 7 and 6 ranges would leave the last empty.
        #expect(SplitK.count(tiles: 1, k: 2304, cores: 32) == 5)
        #expect(SplitK.rangeLength(k: 2304, splits: 5) * 4 < 2304)
    }

    /// Every tile, form (x·Wᵀ, G·W, Gᵀ·x) and operand dtype, with bias, against the CPU backend: within
    /// 2·(K + 2)·2⁻²⁴ of Σ|a·b| + |bias| (f32 sums of exact products on both).
    @Test(arguments: [DType.f32, .f16, .bf16])
    func everyTileAndFormMatchesTheCPU(_ dtype: DType) throws {
        let backend = try ownBackend()
        let cpu = try Engine.backend(.cpu)
        for (tile, m, n, k) in Self.tileShapes {
            for (transposeA, transposeB) in [(false, true), (false, false), (true, false)] {
                let aShape: Shape = transposeA ? [k, m] : [m, k], bShape: Shape = transposeB ? [n, k] : [k, n]
                let a = randomValues(aShape.count, seed: 1, dtype: dtype), b = randomValues(bShape.count, seed: 2, dtype: dtype)
                let bias = randomValues(n, seed: 3, dtype: dtype)
                func run(_ on: any Backend) throws -> [Float] {
                    try Ops.matmul(try Tensor(a, shape: aShape, dtype: dtype, on: on), try Tensor(b, shape: bShape, dtype: dtype, on: on),
                                   transposeA: transposeA, transposeB: transposeB, bias: try Tensor(bias, shape: [n], dtype: dtype, on: on),
                                   outputDType: .f32).floats()
                }
                let got = try run(backend), reference = try run(cpu)
                if backend.coopmatTile == nil || dtype == .f32 { #expect(backend.drainMatmulPaths() == [MatmulPath.scalar(tile): 1]) }
                _ = backend.drainMatmulPaths()
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var magnitude = abs(Double(bias[j]))
                        for p in 0..<k {
                            magnitude += abs(Double(transposeA ? a[p * m + i] : a[i * k + p]) * Double(transposeB ? b[j * k + p] : b[p * n + j]))
                        }
                        worst = max(worst, abs(Double(got[i * n + j]) - Double(reference[i * n + j])) / max(magnitude, .leastNormalMagnitude))
                    }
                }
                #expect(worst <= 2 * Double(k + 2) * 0x1p-24, "\(tile) \(dtype) transposeA \(transposeA) transposeB \(transposeB)")
            }
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// Under `medium` the scalar kernel holds f32 and dequantized values in bf16 tiles (`MatmulKernel.bf16Tiles`):
    /// f32 operands in every form and tile, and a Q4_0 and an NF4 B in both of training's forms, against the CPU's
    /// exact product. Each factor rounded to bf16 (8 significant bits) moves a product by at most (1 + 2⁻⁸)² − 1 of
    /// |a·b|, and f32 sums add 2·(K + 2)·2⁻²⁴ of Σ|a·b|; the error must also pass the f32 sums' bound alone
    /// somewhere, so the rounding is there. The same products under `highest` stay in f32 tiles.
    @Test func mediumRoundsF32TilesToBFloat16() throws {
        let backend = try ownBackend()
        backend.cooperativeMatricesEnabled = false
        let cpu = try Engine.backend(.cpu)
        var cases: [(DType, Int, Int, Int, Bool, Bool)] = []
        for (_, m, n, k) in Self.tileShapes {
            for (transposeA, transposeB) in [(false, true), (false, false), (true, false)] { cases.append((.f32, m, n, k, transposeA, transposeB)) }
        }
        for format in [DType.q4_0, .nf4] {
            for transposeB in [true, false] { cases.append((format, 130, 128, 192, false, transposeB)) }
        }
        for (bType, m, n, k, transposeA, transposeB) in cases {
            let aShape: Shape = transposeA ? [k, m] : [m, k], bShape: Shape = transposeB ? [n, k] : [k, n]
            let a = randomValues(aShape.count, seed: 21), b = randomValues(bShape.count, seed: 22, scale: bType == .f32 ? 1 : 0.05)
            func run(_ on: any Backend) throws -> [Float] {
                try Ops.matmul(try Tensor(a, shape: aShape, on: on), try Tensor(b, shape: bShape, dtype: bType, on: on),
                               transposeA: transposeA, transposeB: transposeB, outputDType: .f32).floats()
            }
            let reference = try run(cpu)
            backend.matmulPrecision = .highest
            let exact = try run(backend)
            backend.matmulPrecision = .medium
            let got = try run(backend)
            #expect(backend.drainMatmulPaths().keys.allSatisfy { if case .scalar = $0 { true } else { false } })
            let factors = bType == .f32 ? b : try Ops.cast(try Tensor(b, shape: bShape, dtype: bType, on: cpu), to: .f32).floats()
            var (worst, worstExact) = (0.0, 0.0)
            for i in 0..<m {
                for j in 0..<n {
                    var magnitude = 0.0
                    for p in 0..<k {
                        magnitude += abs(Double(transposeA ? a[p * m + i] : a[i * k + p]) * Double(factors[transposeB ? j * k + p : p * n + j]))
                    }
                    let scale = max(magnitude, .leastNormalMagnitude), ref = Double(reference[i * n + j])
                    worst = max(worst, abs(Double(got[i * n + j]) - ref) / scale)
                    worstExact = max(worstExact, abs(Double(exact[i * n + j]) - ref) / scale)
                }
            }
            let sums = 2 * Double(k + 2) * 0x1p-24, name = "\(bType) \(m)×\(n)×\(k) transposeA \(transposeA) transposeB \(transposeB)"
            #expect(worst <= (1 + 0x1p-8) * (1 + 0x1p-8) - 1 + sums && worst > sums, "\(name): \(worst)")
            #expect(worstExact <= sums, "\(name) under highest: \(worstExact)")
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// `MatmulKernel.quadSharedA`, which the host picks on AMD, forced on here (lavapipe has quad operations in
    /// compute, in subgroups of 8): the same products summed in the same order as the exact variant, so bit for
    /// bit its results, over every tile (ragged edges), form and A dtype against an f32, bf16 and block-quantized B
    /// (K-quants too) with bias, accumulation, and LoRA's and DoRA's fused, masked, scaled and split products.
    @Test func quadSharedAIsTheExactVariantBitForBit() throws {
        let backend = try ownBackend()
        (backend.cooperativeMatricesEnabled, backend.matmulPrecision) = (false, .highest)
        #expect(backend.info.features.subgroupQuad && backend.info.features.fullSubgroups, "the shared tile needs quad operations and full subgroups")
        func both(_ body: () throws -> [[Float]]) throws -> (exact: [[Float]], shared: [[Float]]) {
            backend.matmulSharesAInQuads = false
            let exact = try body()
            backend.matmulSharesAInQuads = true
            defer { backend.matmulSharesAInQuads = false }
            return (exact, try body())
        }
        var cases: [(String, DType, DType, Int, Int, Int, Bool, Bool)] = []
        for (tile, m, n, k) in Self.tileShapes {
            for (transposeA, transposeB) in [(false, true), (false, false), (true, false)] {
                for (aType, bType) in [(DType.f32, DType.f32), (.bf16, .bf16)] {
                    cases.append(("\(tile)", aType, bType, m, n, k, transposeA, transposeB))
                }
            }
        }
        for (aType, bType) in [(DType.f16, DType.f32), (.f32, .bf16), (.f32, .q4_0), (.f16, .nf4), (.bf16, .q8_0)] {
            for transposeB in [true, false] { cases.append(("\(bType)", aType, bType, 130, 256, 256, false, transposeB)) }
        }
        // K-quants come only from GGUF: the fixture's blocks (GGUFQuantizationTests), their rows as B's.
        let gguf = try GGUFQuantizationTests.fixture()
        for (aType, bType) in [(DType.f32, DType.q4_K), (.f16, .q5_K), (.bf16, .q6_K)] {
            let shape = try gguf.entry("\(bType).values").shape
            cases.append(("\(bType)", aType, bType, 130, shape[0], shape[1], false, true))
            cases.append(("\(bType)", aType, bType, 130, shape[1], shape[0], false, false))
        }
        for (name, aType, bType, m, n, k, transposeA, transposeB) in cases {
            let aShape: Shape = transposeA ? [k, m] : [m, k], bShape: Shape = transposeB ? [n, k] : [k, n]
            let a = randomValues(aShape.count, seed: 31, dtype: aType)
            let b = randomValues(bShape.count, seed: 32, dtype: bType.isQuantized ? .f32 : bType, scale: bType.isQuantized ? 0.05 : 1)
            let bias = randomValues(n, seed: 33), initial = randomValues(m * n, seed: 34)
            func bTensor() throws -> Tensor {
                [.q4_K, .q5_K, .q6_K].contains(bType) ? try GGUFQuantizationTests.weight(bType, from: gguf, on: backend).0
                    : try Tensor(b, shape: bShape, dtype: bType, on: backend)
            }
            let kernel = MatmulKernel(a: aType, b: bType, c: .f32, transposeA: transposeA, transposeB: transposeB, bias: nil, accumulate: false,
                                      second: nil, dropout: nil, vector: nil, writesInner: false)
            backend.matmulSharesAInQuads = true
            #expect(backend.scalarVariant(kernel).quadSharedA, "\(name) \(aType)·\(bType)")
            let (exact, shared) = try both {
                let aT = try Tensor(a, shape: aShape, dtype: aType, on: backend), bT = try bTensor()
                let product = try Ops.matmul(aT, bT, transposeA: transposeA, transposeB: transposeB,
                                             bias: try Tensor(bias, shape: [n], on: backend), outputDType: .f32)
                let c = try Tensor(initial, shape: [m, n], on: backend)
                try Ops.matmul(aT, bT, transposeA: transposeA, transposeB: transposeB, alpha: 0.5, accumulatingInto: c)
                return [try product.floats(), try c.floats()]
            }
            #expect(exact == shared, "\(name) \(aType)·\(bType) transposeA \(transposeA) transposeB \(transposeB)")
        }
        let lora = LoRAOptions(scale: 2, dropout: 0.25, seed: 7, outputDType: .f32)
        let dora = DoRAOptions(lora: LoRAOptions(scale: 2, dropout: 0.25, seed: 8, outputDType: .f32))
        for cores in [1, 32] {
            backend.splitKCores = cores
            let (exact, shared) = try both {
                let l = try LongLayer(on: backend)
                let (y, u) = try Ops.loraForward(x: l.x, weight: l.w, bias: nil, a: l.a, b: l.b, options: lora)
                let (dx, da, db) = try Ops.loraBackward(gradOutput: l.g, x: l.x, weight: l.w, a: l.a, b: l.b, u: u, options: lora)
                let forward = try Ops.doraForward(x: l.x, weight: l.w, bias: nil, a: l.a, b: l.b, magnitude: l.magnitude,
                                                  weightNormSquared: try Ops.rowSumOfSquares(l.w), options: dora)
                let (doraDx, doraDa, doraDb, dm) = try Ops.doraBackward(gradOutput: l.g, x: l.x, weight: l.w, a: l.a, b: l.b, forward: forward,
                                                                        options: dora)
                return try [y, u, dx, da, db, forward.y, doraDx, doraDa, doraDb, try #require(dm)].map { try $0.floats() }
            }
            #expect(exact == shared, "LoRA and DoRA, split-K over \(cores) cores")
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// A block-quantized B is read as its decoded values: the product over it is the product over B cast to f32 bit
    /// for bit, for every format (GGML's decoded a quad at a time, `dequant_quad`; NF4 element by element, its rows
    /// here not whole blocks), B and Bᵀ, f32, f16 and bf16 A, a ragged M, with and without dropout on B and A's k
    /// scale (the variants whose decoding sets their registers, docs/isa), K whole and split into ranges.
    @Test func quantizedBIsItsDecodedValuesBitForBit() throws {
        let backend = try ownBackend()
        (backend.cooperativeMatricesEnabled, backend.matmulPrecision, backend.splitKCores) = (false, .highest, 32)
        let gguf = try GGUFQuantizationTests.fixture()
        // The fixture's rows repeated along them to a K that splits: 2304 (GGML's blocks of 32) or 2560 (K-quants).
        var weights: [Tensor] = try GGUFQuantizationTests.ggmlTypes.map { dtype in
            let shape = try gguf.entry("\(dtype).values").shape
            let repeats = (2048 + shape[1] - 1) / shape[1] + 1
            let bytes: [UInt8] = try gguf.withBytes("\(dtype).blocks") { raw in
                let row = raw.count / shape[0]
                return (0..<shape[0]).flatMap { r in [[UInt8]](repeating: Array(raw[(r * row)..<(r * row + row)]), count: repeats).joined() }
            }
            return try bytes.withUnsafeBytes { try Tensor(bytes: $0, shape: [shape[0], shape[1] * repeats], dtype: dtype, on: backend) }
        }
        let nf4Source = try Tensor(randomValues(24 * 2306, seed: 35, scale: 0.05), shape: [24, 2306], on: backend)
        weights += [try Ops.cast(nf4Source, to: .nf4), try Ops.cast(nf4Source, to: .nf4DoubleQuant)]
        let mask = DropoutMask(probability: 0.25, seed: 11), m = 130
        for (index, w) in weights.enumerated() {
            let decoded = try Ops.cast(w, to: .f32)
            let aType = [DType.f32, .f16, .bf16][index % 3]
            for transposeB in [true, false] {
                let (k, n) = transposeB ? (w.shape[1], w.shape[0]) : (w.shape[0], w.shape[1])
                let a = try Tensor(randomValues(m * k, seed: 36, dtype: aType), shape: [m, k], dtype: aType, on: backend)
                let scale = try Tensor(randomValues(k, seed: 37), shape: [k], on: backend)
                for masked in [false, true] {
                    func product(_ b: Tensor) throws -> [Float] {
                        let c = try Tensor.zeros([m, n], on: backend)
                        try backend.dispatchMatmul(MatmulCall(a: a, b: b, c: c, transposeB: transposeB, dropout: masked ? (mask, .b) : nil,
                                                              vector: masked ? (scale, .scaleA(offset: 0.5)) : nil))
                        return try c.floats()
                    }
                    let differing = zip(try product(w), try product(decoded)).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(differing == 0, "\(aType)·\(w.dtype) transposeB \(transposeB) masked and scaled \(masked): \(differing) of \(m * n) differ")
                }
            }
        }
        let paths = backend.drainMatmulPaths()
        #expect(paths.keys.contains { $0.description.contains("split-K") } && paths.keys.allSatisfy { if case .scalar = $0 { true } else { false } }, "\(paths)")
        #expect(try backend.drainValidationMessages().isEmpty)
    }

    /// One adapted layer whose d_in is long enough to split: T = 40, d_in = 2304, d_out = 48, r = 8.
    private struct LongLayer {
        var x, w, a, b, g, magnitude: Tensor
        init(on backend: any Backend) throws {
            let (t, dIn, dOut, r) = (40, 2304, 48, 8)
            x = try Tensor(randomValues(t * dIn, seed: 1), shape: [t, dIn], on: backend)
            w = try Tensor(randomValues(dOut * dIn, seed: 2), shape: [dOut, dIn], on: backend)
            a = try Tensor(randomValues(r * dIn, seed: 3), shape: [r, dIn], on: backend)
            b = try Tensor(randomValues(dOut * r, seed: 4), shape: [dOut, r], on: backend)
            g = try Tensor(randomValues(t * dOut, seed: 5), shape: [t, dOut], on: backend)
            magnitude = try Tensor(randomValues(dOut, seed: 6).map { 1 + $0 / 4 }, shape: [dOut], on: backend)
        }
    }

    /// The skinny products of LoRA and DoRA with K = d_in = 2304, split along K into 5 ranges (the
    /// partial pass, then the ordered sum with the fused epilogue: the second product with dropout,
    /// DoRA's compose and inner), against the CPU backend within the golden bound, twice bit for bit.
    @Test func splitProductsMatchTheCPU() throws {
        let backend = try ownBackend()
        backend.splitKCores = 32
        let lora = LoRAOptions(scale: 2, dropout: 0.25, seed: 7, outputDType: .f32)
        let dora = DoRAOptions(lora: LoRAOptions(scale: 2, outputDType: .f32))
        func outputs(_ l: LongLayer) throws -> [(String, Tensor)] {
            let (y, u) = try Ops.loraForward(x: l.x, weight: l.w, bias: nil, a: l.a, b: l.b, options: lora)
            let (dx, da, db) = try Ops.loraBackward(gradOutput: l.g, x: l.x, weight: l.w, a: l.a, b: l.b, u: u, options: lora)
            let forward = try Ops.doraForward(x: l.x, weight: l.w, bias: nil, a: l.a, b: l.b, magnitude: l.magnitude,
                                              weightNormSquared: try Ops.rowSumOfSquares(l.w), options: dora)
            let (doraDx, doraDa, _, dm) = try Ops.doraBackward(gradOutput: l.g, x: l.x, weight: l.w, a: l.a, b: l.b, forward: forward, options: dora)
            return [("y", y), ("u", u), ("dx", dx), ("dA", da), ("dB", db), ("dora y", forward.y), ("dora dx", doraDx), ("dora dA", doraDa),
                    ("dm", try #require(dm))]
        }
        let got = try outputs(try LongLayer(on: backend)).map { ($0.0, try $0.1.floats()) }
        let paths = backend.drainMatmulPaths()
        let splitProducts = paths.filter { $0.key.description.contains("split-K 5") }.values.reduce(0, +)
        // u = x·Aᵀ, y = x·Wᵀ + s·u·Bᵀ, DoRA's x·Aᵀ and its y with the compose; DoRA's A·Wᵀ and A·Aᵀ (r = 8
        // rows) take the matrix-vector kernel.
        #expect(splitProducts >= 4 && paths[.matrixVector(.choose(m: 8)), default: 0] >= 2, "\(paths)")
        let again = try outputs(try LongLayer(on: backend)).map { try $0.1.floats() }
        let reference = try outputs(try LongLayer(on: try Engine.backend(.cpu))).map { try $0.1.floats() }
        for (((name, values), ref), repeated) in zip(zip(got, reference), again) {
            #expect(relativeError(values, ref.map(Double.init)) <= GoldenCase.bound, "\(name)")
            #expect(values == repeated, "\(name) is not deterministic")
        }
        #expect(try backend.drainValidationMessages().isEmpty)
    }
}
