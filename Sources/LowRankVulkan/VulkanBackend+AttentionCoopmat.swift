import LowRankCore

/// `Shaders/attention_coopmat.comp`: `attention.comp`'s forward, dq and dk/dv passes with the products
/// of tiles in cooperative matrices (ggml-vulkan's `flash_attn_cm1.comp`), f16 operands and f32
/// accumulators and softmax; every pass reads K's and V's fragments from their buffers where it can. Its SPIR-V is compiled ahead of time: the pass and the staged head
/// columns (and packed rows) are defines (the variants, modules of `Shaders/spirv/`), the tile, matrix shape and
/// operand dtypes specialization constants (`Constants`). The cached forward pass stays scalar.
struct AttentionCoopmatKernel: Kernel {
    typealias Push = AttentionKernel.Push
    static let shader = Shader.attentionCoopmat

    enum Pass: KernelPass {
        case forward
        case queryGradient
        case keyValueGradient

        var isForward: Bool { self == .forward }
    }

    var pass: Pass
    /// `HEAD_DIM_MAX`: one of `AttentionKernel.Tile.headDims`, the head dim rounded up.
    var headDimMax: Int
    /// `SEQUENCE_STARTS`: a packed attention, its sequence starts bound after the pass's other buffers.
    var packed: Bool

    var defines: [String: String] { pass.defines + ["HEAD_DIM_MAX": "\(headDimMax)u"] + (packed ? ["SEQUENCE_STARTS": "1"] : [:]) }

    static var variants: [AttentionCoopmatKernel] {
        Pass.allCases.flatMap { pass in
            AttentionKernel.Tile.headDims.flatMap { headDimMax in [false, true].map { AttentionCoopmatKernel(pass: pass, headDimMax: headDimMax, packed: $0) } }
        }
    }

    /// The RDNA3 tile (`CoopmatTile.rdna3`'s matrices and subgroups) with f16 operands, f32 results and K
    /// and V read from their buffers.
    var measuredSpecialization: [UInt32] {
        let rdna3 = CoopmatTile.rdna3
        let tile = Tile.largest(pass: pass, headDimMax: headDimMax, shape: rdna3.shape, subgroupSize: rdna3.subgroupSize, sharedBytes: 65536)!
        return Constants(tile: tile, q: .f16, k: .f16, v: .f16, gradient: .f16, out: .f16, c: .f32, direct: true).values
    }

    /// A workgroup of four subgroups over query tiles of `block` rows and key tiles of `keys(pass)` rows,
    /// in `shape`'s matrices.
    struct Tile: Hashable, Sendable, CustomStringConvertible {
        var shape: VulkanDeviceInfo.CooperativeMatrixShape
        var block: Int
        var headDimMax: Int
        var subgroupSize: Int

        static let blocks = [64, 32, 16]
        static let subgroups = 4
        /// A workgroup's shared memory at most where a block fits it: with four 64-wide subgroups, RDNA3's
        /// 128 KiB a WGP (RADV's count: 32 KiB a SIMD, in 1 KiB steps) holds five such workgroups, 12
        /// subgroups per SIMD, ggml-vulkan's `flash_attn_cm1` occupancy, up to 25 KiB a workgroup.
        static let sharedBudget = 24 * 1024
        var workgroupSize: Int { Self.subgroups * subgroupSize }

        /// Key rows of a tile: the forward's one matrix block per subgroup, the backward's `block`.
        func keys(_ pass: Pass) -> Int { pass.isForward ? Self.subgroups * shape.n : block }

        /// The shader's `shared` arrays in `pass`: the staged q (and, backward, G) of `block` rows of
        /// `headDimMax + 8` f16, f32 scores (and dP) with rows of `keys + 4`, f16 P (and dS) with rows of
        /// `keys + 8`, three per-row scalars, each subgroup's f32 stage and its f16 stage for a K or V
        /// fragment that cannot be read from its buffer (which the pipelines that read them all leave out).
        func sharedBytes(_ pass: Pass) -> Int {
            let (tiles, keys, fragment) = (pass.isForward ? 1 : 2, keys(pass), max(shape.k, shape.n))
            return tiles * block * (headDimMax + 8) * 2 + tiles * block * ((keys + 4) * 4 + (keys + 8) * 2) + 3 * block * 4
                + Self.subgroups * shape.m * shape.n * 4 + Self.subgroups * fragment * (fragment + 8) * 2
        }

        /// `32 rows in 16×16×16, head ≤ 128`.
        var description: String { "\(block) rows in \(shape.m)×\(shape.n)×\(shape.k), head ≤ \(headDimMax)" }

        /// The largest block whose tiles fit `sharedBytes` and `sharedBudget`, else the smallest that fits
        /// `sharedBytes` (the backward's heads of 256); nil when none fits or when `shape`'s sides do not
        /// divide the smallest block (16 rows).
        static func largest(pass: Pass, headDimMax: Int, shape: VulkanDeviceInfo.CooperativeMatrixShape, subgroupSize: Int, sharedBytes: Int) -> Tile? {
            guard [shape.m, shape.n, shape.k].allSatisfy({ blocks.last! % $0 == 0 }) else { return nil }
            let tiles = blocks.map { Tile(shape: shape, block: $0, headDimMax: headDimMax, subgroupSize: subgroupSize) }
            return tiles.first { $0.sharedBytes(pass) <= min(sharedBytes, sharedBudget) } ?? tiles.last.flatMap { $0.sharedBytes(pass) <= sharedBytes ? $0 : nil }
        }

        /// Whether `pass` reads K's and V's fragments from their buffers (`DIRECT`): both f16, the head a
        /// multiple of the matrices' sides and of 8 columns (rows 16-byte aligned, as matrix loads need
        /// them), and at least one key tile of `rows`.
        func readsKeysAndValues(_ pass: Pass, k: DType, v: DType, headDim: Int, rows: Int) -> Bool {
            k == .f16 && v == .f16 && [shape.k, shape.n, 8].allSatisfy { headDim % $0 == 0 } && rows >= keys(pass)
        }
    }

    /// The shader's specialization constants, in `constant_id` order (`ShaderTests` compares the names).
    struct Constants {
        static let names = ["local_size_x", "BLOCK", "CM_M", "CM_N", "CM_K", "Q_DTYPE", "K_DTYPE", "V_DTYPE", "G_DTYPE", "O_DTYPE", "C_DTYPE", "DIRECT"]
        var tile: Tile
        var q, k, v: DType
        /// G's and out's dtypes (backward; ignored forward).
        var gradient, out: DType
        var c: DType
        /// K and V are read from their buffers (`Tile.readsKeysAndValues`).
        var direct = false

        var values: [UInt32] {
            [tile.workgroupSize, tile.block, tile.shape.m, tile.shape.n, tile.shape.k].map(UInt32.init)
                + [q, k, v, gradient, out, c].map(MatmulCoopmatKernel.Constants.code) + [direct ? 1 : 0]
        }
    }
}

extension VulkanBackend {
    /// The cooperative-matrix tile for `pass` over a head of `headDim` columns and operands of
    /// `dtypes`, or nil for the scalar kernel: the device's GEMM matrix shape and subgroups
    /// (`CoopmatTile`), with matrices enabled, a head of at most 256 columns in tiles within its
    /// shared memory, subgroup reductions (the forward's softmax), and f16 operands, or any float ones
    /// where the precision policy lets f32 and bf16 be rounded to f16 (`MatmulPrecision.high`).
    func attentionCoopmatTile(_ pass: AttentionCoopmatKernel.Pass, headDim: Int, dtypes: [DType]) -> AttentionCoopmatKernel.Tile? {
        guard cooperativeMatricesEnabled, info.features.subgroupArithmetic, let gemm = coopmatTile,
              let columns = AttentionKernel.Tile.headDims.first(where: { $0 >= headDim }),
              dtypes.allSatisfy({ $0 == .f16 }) || (matmulPrecision == .high && dtypes.allSatisfy(DType.floats.contains)) else { return nil }
        return .largest(pass: pass, headDimMax: columns, shape: gemm.shape, subgroupSize: gemm.subgroupSize,
                        sharedBytes: info.limits.maxComputeSharedMemoryBytes)
    }

    /// Records `pass` on the cooperative-matrix kernel over `rows` tiled rows (queries forward and for dq,
    /// key rows for dk and dv) of each KV head; `packed` when the bindings end with the sequence starts.
    func dispatchAttentionCoopmat(_ pass: AttentionCoopmatKernel.Pass, _ tile: AttentionCoopmatKernel.Tile, _ constants: AttentionCoopmatKernel.Constants,
                                  _ bindings: [TensorBinding], push: AttentionKernel.Push, rows: Int, packed: Bool) throws {
        try dispatch(AttentionCoopmatKernel(pass: pass, headDimMax: tile.headDimMax, packed: packed), specialization: constants.values, bindings, push: push,
                     groups: ((rows + tile.block - 1) / tile.block, Int(push.kvHeads), 1))
    }
}
