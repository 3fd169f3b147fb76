import LowRankCore

/// `Shaders/attention_coopmat.comp`: `attention.comp`'s forward, dq and dk/dv passes with the products
/// of tiles in cooperative matrices (ggml-vulkan's `flash_attn_cm1.comp`), f16 tiles and f32
/// accumulators and softmax. Its SPIR-V is compiled ahead of time: the pass and the staged head
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

    /// The RDNA3 tile (`CoopmatTile.rdna3`'s matrices and subgroups) with f16 operands and f32 results.
    var measuredSpecialization: [UInt32] {
        let rdna3 = CoopmatTile.rdna3
        let tile = Tile.largest(pass: pass, headDimMax: headDimMax, shape: rdna3.shape, subgroupSize: rdna3.subgroupSize, sharedBytes: 65536)!
        return Constants(tile: tile, q: .f16, k: .f16, v: .f16, gradient: .f16, out: .f16, c: .f32).values
    }

    /// A workgroup of four subgroups over query and key tiles of `block` rows, in `shape`'s matrices.
    struct Tile: Hashable, Sendable, CustomStringConvertible {
        var shape: VulkanDeviceInfo.CooperativeMatrixShape
        var block: Int
        var headDimMax: Int
        var subgroupSize: Int

        static let blocks = [64, 32, 16]
        static let subgroups = 4
        var workgroupSize: Int { Self.subgroups * subgroupSize }

        /// The shader's `shared` arrays in `pass`: f16 tiles of q, k and v (and G) with rows of
        /// `headDimMax + 8`, f32 scores (and dP) with rows of `block + 4`, f16 P (and dS) with rows of
        /// `block + 8`, three per-row scalars, each subgroup's f32 stage and (forward) the softmax's
        /// partial maxima and sums, one per invocation.
        func sharedBytes(_ pass: Pass) -> Int {
            let (tiles, squares) = pass.isForward ? (3, 1) : (4, 2)
            return tiles * block * (headDimMax + 8) * 2 + squares * block * ((block + 4) * 4 + (block + 8) * 2) + 3 * block * 4
                + Self.subgroups * shape.m * shape.n * 4 + (pass.isForward ? workgroupSize * 4 : 0)
        }

        /// `32 rows in 16×16×16, head ≤ 128`.
        var description: String { "\(block) rows in \(shape.m)×\(shape.n)×\(shape.k), head ≤ \(headDimMax)" }

        /// The largest block whose tiles fit `sharedBytes`; nil when none does or when `shape`'s
        /// sides do not divide the smallest block (16 rows).
        static func largest(pass: Pass, headDimMax: Int, shape: VulkanDeviceInfo.CooperativeMatrixShape, subgroupSize: Int, sharedBytes: Int) -> Tile? {
            guard [shape.m, shape.n, shape.k].allSatisfy({ blocks.last! % $0 == 0 }) else { return nil }
            return blocks.lazy.map { Tile(shape: shape, block: $0, headDimMax: headDimMax, subgroupSize: subgroupSize) }
                .first { $0.sharedBytes(pass) <= sharedBytes }
        }
    }

    /// The shader's specialization constants, in `constant_id` order (`ShaderTests` compares the names).
    struct Constants {
        static let names = ["local_size_x", "BLOCK", "CM_M", "CM_N", "CM_K", "Q_DTYPE", "K_DTYPE", "V_DTYPE", "G_DTYPE", "O_DTYPE", "C_DTYPE"]
        var tile: Tile
        var q, k, v: DType
        /// G's and out's dtypes (backward; ignored forward).
        var gradient, out: DType
        var c: DType

        var values: [UInt32] {
            [tile.workgroupSize, tile.block, tile.shape.m, tile.shape.n, tile.shape.k].map(UInt32.init)
                + [q, k, v, gradient, out, c].map(MatmulCoopmatKernel.Constants.code)
        }
    }
}

extension VulkanBackend {
    /// The cooperative-matrix tile for `pass` over a head of `headDim` columns and operands of
    /// `dtypes`, or nil for the scalar kernel: the device's GEMM matrix shape and subgroups
    /// (`CoopmatTile`), with matrices enabled, a head of at most 256 columns in tiles within its
    /// shared memory, and f16 operands, or any float ones where the precision policy lets f32 and
    /// bf16 be rounded to f16 (`MatmulPrecision.high`).
    func attentionCoopmatTile(_ pass: AttentionCoopmatKernel.Pass, headDim: Int, dtypes: [DType]) -> AttentionCoopmatKernel.Tile? {
        guard cooperativeMatricesEnabled, let gemm = coopmatTile,
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
