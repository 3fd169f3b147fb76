import LowRankCore

/// The cooperative-matrix kernel's tiling on one device: a BM×BN block of C per workgroup over steps
/// of BK, each subgroup a WM×WN part of it as a grid of `shape`'s accumulators (ggml-vulkan's warptile).
public struct CoopmatTile: Hashable, Sendable, CustomStringConvertible {
    public var shape: VulkanDeviceInfo.CooperativeMatrixShape
    public var bm: Int, bn: Int, bk: Int
    public var wm: Int, wn: Int
    public var subgroupSize: Int

    var workgroupSize: Int { (bm / wm) * (bn / wn) * subgroupSize }
    /// Shared memory of `Shaders/matmul_coopmat.comp` at this tile: the padded f16 tiles, each subgroup's
    /// f32 stage (at least 16 + 256 entries: a quantized B's code tables share it) and the tile maxima
    /// (two sets of 8 slots for A and for B).
    var sharedBytes: Int { (bm + bn) * (bk + 8) * 2 + max((bm / wm) * (bn / wn) * shape.m * shape.n, 16 + 256) * 4 + 2 * 2 * 8 * 4 }

    /// `128×128×32 in 16×16×16, 64×64 a subgroup`.
    public var description: String { "\(bm)×\(bn)×\(bk) in \(shape.m)×\(shape.n)×\(shape.k), \(wm)×\(wn) a subgroup" }

    /// The largest tile that fits: each subgroup a grid of 4×4 accumulators (ggml-vulkan's large warptile:
    /// every A fragment meets 4 B fragments and each B fragment 4 A ones, 8 shared-memory loads for 16
    /// products), else 2×2, four subgroups in a 2×2 grid, K steps of at least 32 and two matrix slices.
    /// Products with few rows or columns take a smaller one of its family (`sized`).
    static func fit(_ shape: VulkanDeviceInfo.CooperativeMatrixShape, subgroupSize: Int, maxInvocations: Int, maxSharedBytes: Int)
        -> CoopmatTile? {
        for grid in [4, 2] {
            let (wm, wn) = (grid * shape.m, grid * shape.n)
            let tile = CoopmatTile(shape: shape, bm: 2 * wm, bn: 2 * wn, bk: max(32, 2 * shape.k), wm: wm, wn: wn, subgroupSize: subgroupSize)
            if tile.workgroupSize <= maxInvocations, tile.sharedBytes <= maxSharedBytes { return tile }
        }
        return nil
    }

    /// This tile, or a smaller one of its family for an M×N product, as ggml-vulkan chooses among its
    /// small, medium and large tiles: each subgroup a 1×1 grid of accumulators when M or N is at most 32
    /// (a LoRA rank), 2×2 when at most 64, else this tile's grid; the same 2×2 subgroups and K step.
    func sized(m: Int, n: Int) -> CoopmatTile {
        let grid = min(min(m, n) <= 32 ? 1 : min(m, n) <= 64 ? 2 : 4, wm / shape.m)
        return CoopmatTile(shape: shape, bm: (bm / wm) * grid * shape.m, bn: (bn / wn) * grid * shape.n, bk: bk,
                           wm: grid * shape.m, wn: grid * shape.n, subgroupSize: subgroupSize)
    }

    /// The tile for `info`'s device, or why it has none. The matrices are the device's subgroup-scope
    /// f16×f16+f32→f32 shapes, 16×16×16 first, then the largest.
    public static func choose(for info: VulkanDeviceInfo) -> Result<CoopmatTile, CoopmatUnavailable> {
        let f = info.features
        guard f.cooperativeMatrix else { return .failure(.init("no VK_KHR_cooperative_matrix")) }
        // ggml-vulkan uses cooperative matrices on Intel only from Xe2, the architecture whose smallest
        // subgroup is 16 wide.
        guard info.vendorID != 0x8086 || info.limits.minSubgroupSize == 16 else {
            return .failure(.init("Intel GPUs before Xe2 are gated off, as ggml-vulkan gates them"))
        }
        guard f.shaderFloat16, f.vulkanMemoryModel, f.fullSubgroups else {
            return .failure(.init("no shaderFloat16, vulkanMemoryModel or computeFullSubgroups"))
        }
        let shapes = info.cooperativeMatrixShapes.filter {
            $0.scope == "subgroup" && $0.a == "f16" && $0.b == "f16" && $0.c == "f32" && $0.result == "f32" && !$0.saturating
        }.sorted { ($0.m == 16 && $0.n == 16 && $0.k == 16 ? 1 : 0, $0.m * $0.n * $0.k) > ($1.m == 16 && $1.n == 16 && $1.k == 16 ? 1 : 0, $1.m * $1.n * $1.k) }
        guard let shape = shapes.first else { return .failure(.init("no subgroup-scope f16×f16→f32 matrix shape")) }
        guard let tile = fit(shape, subgroupSize: info.limits.subgroupSize, maxInvocations: info.limits.maxWorkgroupInvocations,
                             maxSharedBytes: info.limits.maxComputeSharedMemoryBytes) else {
            return .failure(.init("no tile of \(shape.m)×\(shape.n)×\(shape.k) matrices fits \(info.limits.maxWorkgroupInvocations) invocations and \(info.limits.maxComputeSharedMemoryBytes) B of shared memory"))
        }
        return .success(tile)
    }

    /// What RADV reports for an RDNA3 GPU (NAVI31): 16×16×16 f16 matrices, 64-wide subgroups, 64 KiB of
    /// shared memory. `tools/isa-report.sh` measures the kernel at the tile chosen from it.
    static var rdna3: CoopmatTile {
        fit(.init(m: 16, n: 16, k: 16, a: "f16", b: "f16", c: "f32", result: "f32", saturating: false, scope: "subgroup"),
            subgroupSize: 64, maxInvocations: 1024, maxSharedBytes: 65536)!
    }
}

public struct CoopmatUnavailable: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Which kernel computes a matmul.
public enum MatmulPath: Hashable, Sendable, CustomStringConvertible {
    /// `Shaders/matmul.comp`: f32 FMAs on the tile, every fused epilogue and quantized B.
    case scalar(MatmulTile)
    case coopmat(CoopmatTile)
    /// `Shaders/matmul_vec.comp`: products of a few rows (`MatrixVectorKernel.takes`), on any device.
    case matrixVector(MatrixVectorTile)

    public var description: String {
        switch self {
        case .scalar(let tile): "scalar \(tile)"
        case .coopmat(let tile): "coopmat \(tile)"
        case .matrixVector(let tile): "matrix-vector \(tile)"
        }
    }

    /// Cooperative matrices when the device has a tile, the product has none of the fused extras only
    /// the scalar kernel has (dropout on A or B as they load), B is a float or a block-quantized format the
    /// coopmat kernel dequantizes (`MatmulCoopmatKernel.quantizedB`), and A and B are 16-bit (a quantized
    /// B counts as 16-bit: its values are rounded to f16 in shared memory, as bitsandbytes dequantizes to
    /// a 16-bit compute dtype) or the precision policy lets f32 through. The second product's operands do
    /// not count: it is summed in f32 FMAs on either path.
    static func choose(tile: CoopmatTile?, scalar: MatmulTile, precision: MatmulPrecision, a: DType, b: DType, fusedExtras: Bool) -> MatmulPath {
        guard let tile, !fusedExtras, DType.floats.contains(a),
              DType.floats.contains(b) || MatmulCoopmatKernel.quantizedB.contains(b.quantFormat) else { return .scalar(scalar) }
        return (a != .f32 && b != .f32) || precision != .highest ? .coopmat(tile) : .scalar(scalar)
    }
}

/// `Shaders/matmul_coopmat.comp`: `C = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2)] [+ bias] [+ C]`,
/// the first product in cooperative matrices, B a float or block-quantized (dequantized into shared
/// memory), with dropout on either product and DoRA's vector and inner (`MatmulKernel`'s). Its SPIR-V
/// is compiled ahead of time, so everything but the bindings and B's format is a specialization
/// constant (`Constants`), and the variants are the modules of `Shaders/spirv/`.
struct MatmulCoopmatKernel: Kernel {
    typealias Push = MatmulKernel.Push
    static let shader = Shader.matmulCoopmat
    /// The block-quantized B formats it dequantizes (`Shaders/quant.glsl`'s `dequant_run`).
    static let quantizedB: [QuantFormat] = [.nf4, .nf4DoubleQuant, .q8_0, .q4_0]
    var hasBias: Bool
    var second: Bool
    var vector: Bool
    var writesInner: Bool
    /// B's block format, `.none` for a float B.
    var quant: QuantFormat

    init(hasBias: Bool, second: Bool, vector: Bool, writesInner: Bool, quant: QuantFormat) {
        (self.hasBias, self.second, self.vector, self.writesInner, self.quant) = (hasBias, second, vector, writesInner, quant)
    }

    /// The module that records `matmul`'s bindings.
    init(_ matmul: MatmulKernel) {
        self.init(hasBias: matmul.bias != nil, second: matmul.second != nil, vector: matmul.vector != nil, writesInner: matmul.writesInner,
                  quant: matmul.b.quantFormat)
    }

    var defines: [String: String] {
        ["HAS_BIAS": hasBias.define, "SECOND": second.define, "VEC": vector.define, "WRITE_INNER": writesInner.define]
            .merging(quant.defines(choosing: "B_QUANT")) { $1 }
    }

    /// Every set of bindings and B format; DoRA's inner is written only beside its vector.
    static var variants: [MatmulCoopmatKernel] {
        ([.none] + quantizedB).flatMap { quant in
            [false, true].flatMap { bias in
                [false, true].flatMap { second in
                    [(false, false), (true, false), (true, true)].map {
                        MatmulCoopmatKernel(hasBias: bias, second: second, vector: $0.0, writesInner: $0.1, quant: quant)
                    }
                }
            }
        }
    }

    /// The RDNA3 tile with f16 A, f32 C and B f16 or this variant's format, in `x·Wᵀ` form with every
    /// extra the bindings carry (the second product's operands f32, DoRA's compose where a vector is).
    var measuredSpecialization: [UInt32] {
        let b = [DType.f16, .nf4, .nf4DoubleQuant, .q8_0, .q4_0].first { $0.quantFormat == quant }!
        let matmul = MatmulKernel(a: .f16, b: b, c: .f32, transposeA: false, transposeB: true,
                                  bias: hasBias ? .f16 : nil, accumulate: false, second: second ? .init(a: .f32, b: .f32) : nil,
                                  dropout: second ? .products : .product, vector: vector ? .doraCompose(addBase: false) : nil,
                                  writesInner: writesInner)
        return Constants(tile: .rdna3, matmul: matmul).values
    }

    /// The shader's specialization constants, in `constant_id` order (`ShaderTests` compares the names):
    /// the tile and everything of the scalar kernel's variant that this kernel does.
    struct Constants {
        static let names = ["local_size_x", "BM", "BN", "BK", "CM_M", "CM_N", "CM_K", "WM", "WN", "A_DTYPE", "B_DTYPE", "C_DTYPE",
                            "BIAS_DTYPE", "TRANS_A", "TRANS_B", "ACCUMULATE", "A2_DTYPE", "B2_DTYPE", "DROPOUT_PRODUCT", "DROPOUT_SECOND",
                            "KSCALE", "DORA", "DORA_ADD_BASE"]
        var tile: CoopmatTile
        var matmul: MatmulKernel

        var values: [UInt32] {
            let (t, k) = (tile, matmul)
            let sizes: [Int] = [t.workgroupSize, t.bm, t.bn, t.bk, t.shape.m, t.shape.n, t.shape.k, t.wm, t.wn]
            let dtypes: [DType] = [k.a, k.b, k.c, k.bias ?? .f32]
            let layout: [Bool] = [k.transposeA, k.transposeB, k.accumulate]
            let secondDTypes: [DType] = [k.second?.a ?? .f32, k.second?.b ?? .f32]
            let dropouts: [Bool] = [k.dropout == .product || k.dropout == .products,
                                    k.second != nil && (k.dropout == .second || k.dropout == .products)]
            let vector: [Bool] = [k.vector == .scaleA, k.vector.map { $0 != .scaleA } ?? false, k.vector == .doraCompose(addBase: true)]
            return sizes.map(UInt32.init) + dtypes.map(Self.code) + layout.map(Self.flag) + secondDTypes.map(Self.code)
                + dropouts.map(Self.flag) + vector.map(Self.flag)
        }

        private static func flag(_ value: Bool) -> UInt32 { value ? 1 : 0 }

        /// `DTYPE_F32`, `DTYPE_F16`, `DTYPE_BF16`.
        static func code(_ dtype: DType) -> UInt32 { dtype == .f16 ? 1 : dtype == .bf16 ? 2 : 0 }
    }
}

extension VulkanBackend {
    func matmulPath(_ call: MatmulCall) -> MatmulPath {
        // A product of a few rows reads B once whichever kernel runs it: a tile of C would mostly compute rows that are not there.
        if MatrixVectorKernel.takes(call) { return .matrixVector(.choose(m: call.m)) }
        let maskedOperand = call.dropout.map { !$0.mask.isIdentity && ($0.target == .a || $0.target == .b) } ?? false
        // A scaled by an f32 vector as it loads ((g⊙G)·W) is an f32 operand, whatever A's storage.
        let scaledA = if case .scaleA = call.vector?.use { true } else { false }
        return .choose(tile: cooperativeMatricesEnabled ? coopmatTile?.sized(m: call.m, n: call.n) : nil, scalar: scalarTile(m: call.m, n: call.n),
                       precision: matmulPrecision, a: scaledA ? .f32 : call.a.dtype, b: call.b.dtype, fusedExtras: maskedOperand)
    }

    /// Records the block `kernel` describes (the scalar kernel's variant, bindings and push constants) on
    /// the cooperative-matrix kernel.
    func dispatchCoopmat(_ tile: CoopmatTile, _ kernel: MatmulKernel, _ bindings: [TensorBinding], push: MatmulKernel.Push,
                         rows: Int, columns: Int) throws {
        try dispatch(MatmulCoopmatKernel(kernel),
                     specialization: MatmulCoopmatKernel.Constants(tile: tile, matmul: kernel).values, bindings, push: push,
                     groups: ((columns + tile.bn - 1) / tile.bn, (rows + tile.bm - 1) / tile.bm, 1))
    }

    /// How many matmuls each path has computed since the last call (`lowrank check` reports them).
    public func drainMatmulPaths() -> [MatmulPath: Int] {
        matmulPathCounts.withLock { counts in defer { counts = [:] }; return counts }
    }

    /// `drainMatmulPaths()` as text: `coopmat 64×64×32 in 8×8×8, 32×32 a subgroup ×2, scalar 128×128×8 (8×8 per thread) ×1`.
    public func drainMatmulPathSummary() -> String {
        drainMatmulPaths().map { "\($0.key) ×\($0.value)" }.sorted().joined(separator: ", ")
    }
}
