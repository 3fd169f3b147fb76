import LowRankCore

/// The matrix-vector kernel's shape (`Shaders/matmul_vec.comp`'s specialization constants): ROWS rows
/// of C by COLUMNS columns per workgroup, K summed by `threads` invocations and then in a tree.
public struct MatrixVectorTile: Hashable, Sendable, CustomStringConvertible {
    public var rows: Int, columns: Int
    public var threads = 64

    /// Products of at most this many rows take the kernel, as ggml-vulkan's `mul_mat_vec` takes up to 8
    /// columns of its activations.
    static let maxRows = 8

    /// The rows a workgroup computes (a power of two at least M, so that few pipelines serve every M)
    /// and the columns: four for one or two rows, two beyond, keeping a thread's sums at 8 or 16.
    static func choose(m: Int) -> MatrixVectorTile {
        let rows = m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8
        return MatrixVectorTile(rows: rows, columns: rows <= 2 ? 4 : 2)
    }

    /// The shader's names of `specialization`, in `constant_id` order.
    static let constantNames = ["local_size_x", "ROWS", "COLUMNS"]
    var specialization: [UInt32] { [threads, rows, columns].map(UInt32.init) }

    /// `1×4 (64 threads)`.
    public var description: String { "\(rows)×\(columns) (\(threads) threads)" }
}

/// `Shaders/matmul_vec.comp`: a variant of `MatmulKernel` (its bindings, push constants and defines) for
/// products with few rows and B in the nn.Linear layout, without what only the tiled kernel does (split K,
/// dropout on A or B as they load, A's k scale).
struct MatrixVectorKernel: Kernel {
    typealias Push = MatmulKernel.Push
    static let shader = Shader.matmulVec
    var matmul: MatmulKernel

    init?(_ matmul: MatmulKernel) {
        guard matmul.transposeB, matmul.split == .none, ![.a, .b].contains(matmul.dropout), matmul.vector != .scaleA, !matmul.bf16Tiles,
              !matmul.quadSharedA else { return nil }
        self.matmul = matmul
    }

    var defines: [String: String] { matmul.defines }

    /// `MatmulKernel`'s cover with B transposed and the tiled kernel's switches off: every B dtype, epilogue
    /// and dropout on the products.
    static var variants: [MatrixVectorKernel] {
        var seen = Set<MatrixVectorKernel>()
        return MatmulKernel.variants.compactMap { variant in
            var v = variant
            (v.transposeB, v.split, v.bf16Tiles, v.quadSharedA) = (true, .none, false, false)
            if [.a, .b].contains(v.dropout) { v.dropout = nil }
            if v.vector == .scaleA { v.vector = nil }
            return MatrixVectorKernel(v).flatMap { seen.insert($0).inserted ? $0 : nil }
        }
    }

    /// Whether `call` can take the kernel: few rows, B `[N, K]`, no mask on an operand and no k scale.
    static func takes(_ call: MatmulCall) -> Bool {
        let maskedOperand = call.dropout.map { !$0.mask.isIdentity && [.a, .b].contains($0.target) } ?? false
        let scaledA = if case .scaleA = call.vector?.use { true } else { false }
        return call.m <= MatrixVectorTile.maxRows && call.transposeB && !maskedOperand && !scaledA
    }
}

extension VulkanBackend {
    /// Records one block of a product on the matrix-vector kernel: a workgroup per `tile.rows` rows by
    /// `tile.columns` columns of C.
    func dispatchMatrixVector(_ tile: MatrixVectorTile, _ kernel: MatmulKernel, _ bindings: [TensorBinding], push: MatmulKernel.Push,
                              rows: Int, columns: Int) throws {
        guard let vectorKernel = MatrixVectorKernel(kernel) else {
            throw LowRankError(.unsupported, "matmul: the matrix-vector kernel has no variant with split K, dropout on an operand or a k scale", context: [("variant", "\(kernel)")])
        }
        try dispatch(vectorKernel, specialization: tile.specialization, bindings, push: push,
                     groups: ((columns + tile.columns - 1) / tile.columns, (rows + tile.rows - 1) / tile.rows, 1))
    }
}
