import LowRankCore

extension DType {
    /// The GLSL element type a binding of this dtype is declared with (bf16 travels as raw bits).
    var glslType: String {
        switch self {
        case .f32: "float"
        case .f16: "float16_t"
        case .bf16: "uint16_t"
        case .u8: "uint8_t"
        case .i8: "int8_t"
        case .i32: "int"
        case .i64: "int64_t"
        case .nf4, .nf4DoubleQuant, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K: "uint"  // packed blocks, read as words (Shaders/quant.glsl)
        }
    }

    /// The GLSL type of four consecutive elements of a float dtype, read in one load (`LOAD_QUAD` in matmul.comp).
    var glslQuadType: String {
        switch self {
        case .f16: "f16vec4"
        case .bf16: "u16vec4"
        default: "vec4"
        }
    }

    /// The common.glsl function that rounds an f32 result into this dtype.
    var glslFromF32: String {
        switch self {
        case .f16: "f32_to_f16"
        case .bf16: "f32_to_bf16"
        default: "f32_to_f32"
        }
    }
}

/// `Shaders/matmul.comp`: a tile of C per workgroup, its shape the specialization constants of a `MatmulTile`.
struct MatmulKernel: Kernel {
    /// The second product's operand dtypes.
    struct Second: Hashable {
        var a: DType
        var b: DType
    }

    /// What the per-element vector does (`MatmulCall.VectorUse` without its values).
    enum Vector: Hashable {
        case scaleA, doraCompose(addBase: Bool)
        init(_ use: MatmulCall.VectorUse) {
            switch use {
            case .scaleA: self = .scaleA
            case .doraCompose(let addBase): self = .doraCompose(addBase: addBase)
            }
        }
    }

    struct Push: BitwiseCopyable {
        var m: UInt32
        var n: UInt32
        var k: UInt32
        var k2: UInt32
        var alpha: Float
        var alpha2: Float
        var seed: UInt32
        var dropThreshold: UInt32
        var keepScale: Float
        var lda: UInt32
        var ldb: UInt32
        var ldc: UInt32
        var lda2: UInt32
        var ldb2: UInt32
        var m0: UInt32
        var n0: UInt32
        var k0: UInt32
        var vecOffset: Float
        var bCount: UInt32
    }

    static let shader = Shader.matmul
    var a: DType
    /// A float dtype or a block-quantized one (`B_QUANT`).
    var b: DType
    var c: DType
    var transposeA: Bool
    var transposeB: Bool
    var bias: DType?
    var accumulate: Bool
    var second: Second?
    var dropout: MatmulCall.DropoutTarget?
    var vector: Vector?
    /// DoRA's `inner` written beside C.
    var writesInner: Bool
    var split: SplitK = .none
    /// Tiles that would be f32 (an f32, dequantized, masked or scaled operand's) hold bf16 instead, each
    /// value rounded to nearest even, the sums f32: the scalar kernel under `MatmulPrecision.medium`.
    var bf16Tiles = false
    /// The four threads of a subgroup quad compute the same rows, each reads a quarter of A's values from
    /// shared memory and takes the rest from the others by quad permutes (`QUAD_SHARED_A`): the same
    /// products and sums, 3.2 FLOPs per LDS byte with f32 tiles where each thread reading all of A's gives 2.
    var quadSharedA = false

    /// Whether a tile of the first product is f32: an operand that is f32 or changed as it loads.
    var hasF32Tile: Bool {
        split != .reduce && (a == .f32 || b == .f32 || b.isQuantized || [.a, .b].contains(dropout) || vector == .scaleA)
    }

    /// Whether `quadSharedA` applies: to a tile loop on the exact path (not `bf16Tiles`) whose B tile is not
    /// f16. RDNA2 reads an f16 B tile with `v_fma_mix_f32`, which takes no DPP operand, so each permuted A
    /// value would cost a `v_mov_b32_dpp` (docs/isa); such products already read 2.67 or 4 FLOPs per LDS byte.
    var sharesAInQuads: Bool { split != .reduce && !bf16Tiles && !(b == .f16 && dropout != .b) }

    /// A quad-shared tile numbers its threads in subgroup order, which covers the workgroup only when
    /// every subgroup is full.
    var requiresFullSubgroups: Bool { quadSharedA }

    var defines: [String: String] {
        var d = a.operandDefines("A") + b.operandDefines("B") + c.operandDefines("C", written: true)
            + b.quantFormat.defines(choosing: "B_QUANT")
        d["A_QUAD_T"] = a.glslQuadType
        if !b.isQuantized { d["B_QUAD_T"] = b.glslQuadType }
        d["TRANS_A"] = transposeA.define
        d["TRANS_B"] = transposeB.define
        d["HAS_BIAS"] = (bias != nil).define
        d["ACCUMULATE"] = accumulate.define
        d["SECOND"] = (second != nil).define
        d["DROPOUT_A"] = (dropout == .a).define
        d["DROPOUT_B"] = (dropout == .b).define
        d["DROPOUT_PRODUCT"] = (dropout == .product || dropout == .products).define
        d["DROPOUT_SECOND"] = ((dropout == .second || dropout == .products) && second != nil).define
        d["KSCALE"] = (vector == .scaleA).define
        d["DORA"] = (vector.map { $0 != .scaleA } ?? false).define
        d["DORA_ADD_BASE"] = (vector == .doraCompose(addBase: true)).define
        d["WRITE_INNER"] = writesInner.define
        d["BF16_TILES"] = bf16Tiles.define
        d["QUAD_SHARED_A"] = quadSharedA.define
        d = d + split.defines
        if let bias { d = d + bias.operandDefines("BIAS") }
        if let second { d = d + second.a.operandDefines("A2") + second.b.operandDefines("B2") }
        return d
    }

    /// A pairwise cover (`PairwiseCover`) of the switches the host sets, each B dtype (every
    /// block-quantized one too) among them: every two switches meet in each of their
    /// combinations, such as dropout on the second product with a quantized B. The full product
    /// is some 20000 variants; the switches are separate `#if` blocks, so pairs are where they meet.
    /// A split-K partial pass has only the first product's switches (f32 C), a reduce pass only the epilogue's.
    /// Each variant with an f32 tile comes again with `bf16Tiles`, and each that can share A in quads with `quadSharedA`.
    static var variants: [MatmulKernel] {
        let bTypes = DType.floats + DType.quantized
        let dropouts: [MatmulCall.DropoutTarget?] = [nil, .a, .b, .product, .second, .products]
        let vectors: [Vector?] = [nil, .scaleA, .doraCompose(addBase: false), .doraCompose(addBase: true)]
        let splits = SplitK.allCases
        let choices = [2, 2, 2, 2, 2, dropouts.count, vectors.count, 2, bTypes.count, splits.count]
        let rows = PairwiseCover.rows(choices) { r in
            // Dropout on the second product needs one; DoRA's inner is written only by its compose.
            guard (r[4] == 1 || ![.second, .products].contains(dropouts[r[5]])) && (r[7] == 0 || [2, 3].contains(r[6])) else { return false }
            switch splits[r[9]] {
            case .none: return true
            case .partial: return r[2] == 0 && r[3] == 0 && r[4] == 0 && [nil, .a, .b].contains(dropouts[r[5]]) && r[6] <= 1 && r[7] == 0
            case .reduce: return ![.a, .b].contains(dropouts[r[5]]) && r[6] != 1 && r[8] < DType.floats.count
            }
        }
        let cover = rows.enumerated().map { i, r in
            let t = DType.cover(i, operands: 5)
            return MatmulKernel(a: t[0], b: bTypes[r[8]], c: splits[r[9]] == .partial ? .f32 : t[1], transposeA: r[0] == 1, transposeB: r[1] == 1,
                                bias: r[2] == 1 ? t[2] : nil, accumulate: r[3] == 1, second: r[4] == 1 ? Second(a: t[3], b: t[4]) : nil,
                                dropout: dropouts[r[5]], vector: vectors[r[6]], writesInner: r[7] == 1, split: splits[r[9]])
        }
        let rounded = cover.filter(\.hasF32Tile).map { variant in
            var rounded = variant
            rounded.bf16Tiles = true
            return rounded
        }
        let quadShared = cover.filter(\.sharesAInQuads).map { variant in
            var shared = variant
            shared.quadSharedA = true
            return shared
        }
        return cover + rounded + quadShared
    }
}

/// How a product's K is split over workgroups (`SPLIT_K`): not at all, or the two passes of a split,
/// the partial products and their ordered sum with the epilogue.
enum SplitK: ShaderChoice {
    case none, partial, reduce
    static let macro = "SPLIT_K"

    /// ggml-vulkan's rule for how many ranges to split K into: only when K is long (2048 or more) and
    /// the product's tiles fill at most two thirds of the device's `cores` (compute units): as many as
    /// fill them (three between a half and two thirds), at most 8, each a whole number of 256-long
    /// steps, fewer where the last would be empty.
    static func count(tiles: Int, k: Int, cores: Int) -> Int {
        guard k >= 2048, tiles > 0 else { return 1 }
        var splits = tiles <= cores / 2 ? cores / tiles : tiles <= cores * 2 / 3 ? 3 : 1
        splits = min(splits, 8)
        while splits > 1, rangeLength(k: k, splits: splits) * (splits - 1) >= k { splits -= 1 }
        return splits
    }

    /// The length of each range, rounded up to 256 as ggml-vulkan rounds it (the shader's ranges are
    /// whole BK steps of ⌈K / splits⌉, so none is longer).
    static func rangeLength(k: Int, splits: Int) -> Int { ((k + splits - 1) / splits + 255) / 256 * 256 }
}

/// One product of `Shaders/matmul.comp`:
/// `C = alpha·op(A)·op(B) [+ alpha2·op(A2)·op(B2)] [+ bias] [+ C]`, with an optional dropout mask.
struct MatmulCall {
    /// Where the dropout mask applies: A's elements, B's, the first product, the second one, or
    /// both products (at C's (m, n)).
    enum DropoutTarget: Hashable, Sendable { case a, b, product, second, products }

    /// What a per-element vector does: scale A's elements by `vector[k] + offset` as they load, or
    /// compose DoRA's output in the epilogue with `g = vector[n]` (`Shaders/dora.glsl`).
    enum VectorUse: Equatable { case scaleA(offset: Float), doraCompose(addBase: Bool) }

    var a: Tensor
    var b: Tensor
    var c: Tensor
    var transposeA = false
    var transposeB = false
    var alpha: Float = 1
    var bias: Tensor?
    var accumulate = false
    /// The second product, with the same layouts over its own inner dimension.
    var second: (a: Tensor, b: Tensor, alpha: Float)?
    var dropout: (mask: DropoutMask, target: DropoutTarget)?
    var vector: (values: Tensor, use: VectorUse)?
    /// DoRA's `inner = product + second` (f32, C's shape), written beside C.
    var inner: Tensor?

    var m: Int { c.shape[0] }
    var n: Int { c.shape[1] }
    var k: Int { transposeA ? a.shape[0] : a.shape[1] }
    var k2: Int { second.map { transposeA ? $0.a.shape[0] : $0.a.shape[1] } ?? 0 }
}

extension VulkanBackend {
    func encodeMatmul(_ o: MatmulOptions, _ inputs: [Tensor], _ c: Tensor) throws {
        try dispatchMatmul(MatmulCall(a: inputs[0], b: inputs[1], c: c, transposeA: o.transposeA, transposeB: o.transposeB,
                                      alpha: o.alpha, bias: o.hasBias ? inputs[2] : nil, accumulate: o.accumulate))
    }

    /// Records `call`, as one dispatch, or as a grid of blocks over (M, N, K) when an operand is
    /// larger than one binding: each block binds windows of its operands, with the full tensors'
    /// row strides, and blocks after the first along K accumulate into C. A product of one block on
    /// the scalar kernel whose tiles are few and K long is split along K (`SplitK`).
    func dispatchMatmul(_ call: MatmulCall) throws {
        let (m, n, k) = (call.m, call.n, call.k)
        guard m > 0, n > 0 else { return }
        let block = try MatmulBlocking(call, limit: maxBindingBytes)
        let path = matmulPath(call)
        // DoRA's compose without the second product is a later block's share, which only blocks have.
        let blockShare = call.second == nil && call.vector.map { if case .doraCompose = $0.use { true } else { false } } ?? false
        if case .scalar(var tile) = path, block.m == m, block.n == n, block.k >= k, !blockShare {
            tile.splits = SplitK.count(tiles: tile.tiles(m: m, n: n), k: k, cores: splitKCores)
            if tile.splits > 1, tile.splits * m * n * 4 <= maxBindingBytes {
                matmulPathCounts.withLock { $0[.scalar(tile), default: 0] += 1 }
                return try dispatchSplitK(call, tile)
            }
        }
        matmulPathCounts.withLock { $0[path, default: 0] += 1 }
        for m0 in stride(from: 0, to: m, by: block.m) {
            for n0 in stride(from: 0, to: n, by: block.n) {
                for k0 in stride(from: 0, to: max(k, 1), by: block.k) {
                    try dispatchMatmulBlock(call, path, rows: m0..<min(m0 + block.m, m), columns: n0..<min(n0 + block.n, n),
                                            inner: k0..<min(k0 + block.k, k))
                }
            }
        }
    }

    /// `call` in two passes: `splits` workgroups along K each write their range's product into an
    /// f32 `[splits, M, N]` workspace, then one pass sums them in order and applies the epilogue
    /// (the second product, dropout, DoRA, bias, accumulation), as one product would.
    private func dispatchSplitK(_ call: MatmulCall, _ tile: MatmulTile) throws {
        let (m, n, splits) = (call.m, call.n, tile.splits)
        let parts = try scratch([splits, m, n])
        let kernel = MatmulKernel(call)
        var partial = kernel
        (partial.c, partial.bias, partial.accumulate, partial.second, partial.writesInner, partial.split) = (.f32, nil, false, nil, false, .partial)
        if ![.a, .b].contains(partial.dropout) { partial.dropout = nil }
        if partial.vector != .scaleA { partial.vector = nil }
        var push = MatmulKernel.Push(call, rows: 0..<m, columns: 0..<n, inner: 0..<call.k, second: false)
        var bindings: [TensorBinding] = [.read(call.a), .read(call.b), .write(parts)]
        if case .scaleA = call.vector?.use { bindings.append(.read(call.vector!.values)) }
        try dispatch(scalarVariant(partial), specialization: tile.specialization, bindings, push: push,
                     groups: ((n + tile.bn - 1) / tile.bn, (m + tile.bm - 1) / tile.bm, splits))

        var reduce = kernel
        reduce.split = .reduce
        if [.a, .b].contains(reduce.dropout) { reduce.dropout = nil }
        if reduce.vector == .scaleA { reduce.vector = nil }
        if reduce.b.isQuantized { reduce.b = .f32 }
        push = MatmulKernel.Push(call, rows: 0..<m, columns: 0..<n, inner: 0..<call.k, second: true)
        push.k = UInt32(splits)
        bindings = [.read(parts), .read(parts), .write(call.c)]
        if let bias = call.bias { bindings.append(.read(bias)) }
        if let second = call.second { bindings += [.read(second.a), .read(second.b)] }
        if case .doraCompose = call.vector?.use { bindings.append(.read(call.vector!.values)) }
        if let inner = call.inner { bindings.append(.write(inner)) }
        try dispatchScalar(tile, reduce, bindings, push: push, rows: m, columns: n)
    }

    private func dispatchMatmulBlock(_ call: MatmulCall, _ path: MatmulPath, rows: Range<Int>, columns: Range<Int>, inner: Range<Int>) throws {
        let first = inner.lowerBound == 0
        let second = first ? call.second : nil
        var kernel = MatmulKernel(call)
        if !first { (kernel.bias, kernel.accumulate, kernel.second) = (nil, true, nil) }
        let layout = MatmulLayout(call)
        let quantized = call.b.dtype.isQuantized
        var bindings: [TensorBinding] = [.read(call.a, layout.a(rows, inner)), quantized ? .read(call.b) : .read(call.b, layout.b(inner, columns)),
                                         .write(call.c, layout.c(rows, columns))]
        if first, let bias = call.bias { bindings.append(.read(bias, columns)) }
        if let second { bindings += [.read(second.a, layout.a2(rows)), .read(second.b, layout.b2(columns))] }
        switch call.vector?.use {
        case .scaleA: bindings.append(.read(call.vector!.values, inner))
        case .doraCompose: bindings.append(.read(call.vector!.values, columns))
        case nil: break
        }
        if let innerTensor = call.inner { bindings.append(.write(innerTensor, layout.c(rows, columns))) }
        let push = MatmulKernel.Push(call, rows: rows, columns: columns, inner: inner, second: second != nil)
        switch path {
        case .scalar(let tile):
            try dispatchScalar(tile, kernel, bindings, push: push, rows: rows.count, columns: columns.count)
        case .coopmat(let tile):
            try dispatchCoopmat(tile, kernel, bindings, push: push, rows: rows.count, columns: columns.count)
        case .matrixVector(let tile):
            try dispatchMatrixVector(tile, kernel, bindings, push: push, rows: rows.count, columns: columns.count)
        }
    }
}

extension MatmulKernel {
    /// The variant that computes `call` whole: its operands' dtypes and its switches.
    init(_ call: MatmulCall) {
        self.init(a: call.a.dtype, b: call.b.dtype, c: call.c.dtype, transposeA: call.transposeA, transposeB: call.transposeB,
                  bias: call.bias?.dtype, accumulate: call.accumulate, second: call.second.map { .init(a: $0.a.dtype, b: $0.b.dtype) },
                  dropout: call.dropout.flatMap { $0.mask.isIdentity ? nil : $0.target },
                  vector: call.vector.map { MatmulKernel.Vector($0.use) }, writesInner: call.inner != nil)
    }
}

extension MatmulKernel.Push {
    /// The push constants of the block of `call` over these rows, columns and inner range (with its
    /// second product when `second`).
    init(_ call: MatmulCall, rows: Range<Int>, columns: Range<Int>, inner: Range<Int>, second: Bool) {
        let layout = MatmulLayout(call)
        let mask = call.dropout?.mask ?? DropoutMask(probability: 0, seed: 0)
        var vectorOffset: Float = 0
        if case .scaleA(let offset) = call.vector?.use { vectorOffset = offset }
        self.init(m: UInt32(rows.count), n: UInt32(columns.count), k: UInt32(inner.count), k2: UInt32(call.k2),
                  alpha: call.alpha, alpha2: second ? call.second?.alpha ?? 0 : 0, seed: mask.seed, dropThreshold: mask.threshold,
                  keepScale: mask.keepScale, lda: UInt32(layout.lda), ldb: UInt32(layout.ldb), ldc: UInt32(call.n),
                  lda2: UInt32(layout.lda2), ldb2: UInt32(layout.ldb2), m0: UInt32(rows.lowerBound),
                  n0: UInt32(columns.lowerBound), k0: UInt32(inner.lowerBound), vecOffset: vectorOffset,
                  bCount: UInt32(call.b.shape.count))
    }
}

extension VulkanBackend {
    /// `kernel` as the scalar kernel runs it here: under `medium`, with bf16 in place of f32 tiles; where
    /// quad permutes are cheap (`matmulSharesAInQuads`), with A shared in quads.
    func scalarVariant(_ kernel: MatmulKernel) -> MatmulKernel {
        var kernel = kernel
        kernel.bf16Tiles = matmulPrecision == .medium && kernel.hasF32Tile
        kernel.quadSharedA = matmulSharesAInQuads && kernel.sharesAInQuads
        return kernel
    }

    /// The scalar kernel's tile for an M×N product here.
    func scalarTile(m: Int, n: Int) -> MatmulTile { .choose(m: m, n: n, device: info) }

    /// Records one product of the scalar kernel at `tile`, one workgroup per tile of C.
    func dispatchScalar(_ tile: MatmulTile, _ kernel: MatmulKernel, _ bindings: [TensorBinding], push: MatmulKernel.Push,
                        rows: Int, columns: Int) throws {
        try dispatch(scalarVariant(kernel), specialization: tile.specialization, bindings, push: push,
                     groups: ((columns + tile.bn - 1) / tile.bn, (rows + tile.bm - 1) / tile.bm, 1))
    }
}

/// Row strides of a matmul's operands and the element windows a block of it reads and writes.
private struct MatmulLayout {
    let call: MatmulCall
    var lda: Int { call.transposeA ? call.m : call.k }
    var ldb: Int { call.transposeB ? call.k : call.n }
    var lda2: Int { call.transposeA ? call.m : call.k2 }
    var ldb2: Int { call.transposeB ? call.k2 : call.n }

    init(_ call: MatmulCall) { self.call = call }

    /// The elements from (r0, c0) through (r1 − 1, c1 − 1) of a row-major matrix with stride `ld`.
    private func window(_ rows: Range<Int>, _ columns: Range<Int>, ld: Int) -> Range<Int> {
        guard !rows.isEmpty, !columns.isEmpty else { return 0..<0 }
        return (rows.lowerBound * ld + columns.lowerBound)..<((rows.upperBound - 1) * ld + columns.upperBound)
    }

    func a(_ m: Range<Int>, _ k: Range<Int>) -> Range<Int> { call.transposeA ? window(k, m, ld: lda) : window(m, k, ld: lda) }
    func b(_ k: Range<Int>, _ n: Range<Int>) -> Range<Int> { call.transposeB ? window(n, k, ld: ldb) : window(k, n, ld: ldb) }
    func c(_ m: Range<Int>, _ n: Range<Int>) -> Range<Int> { window(m, n, ld: call.n) }
    func a2(_ m: Range<Int>) -> Range<Int> { call.transposeA ? window(0..<call.k2, m, ld: lda2) : window(m, 0..<call.k2, ld: lda2) }
    func b2(_ n: Range<Int>) -> Range<Int> { call.transposeB ? window(n, 0..<call.k2, ld: ldb2) : window(0..<call.k2, n, ld: ldb2) }
}

/// Block sizes along M, N and K such that every operand window of a block fits one binding.
/// Blocks are multiples of 256 elements along every split axis, so that each window starts on a
/// 256-byte boundary (the strictest storage-buffer offset alignment Vulkan allows).
private struct MatmulBlocking {
    var m: Int, n: Int, k: Int

    init(_ call: MatmulCall, limit: Int) throws {
        (m, n, k) = (call.m, call.n, max(call.k, 1))
        let layout = MatmulLayout(call)
        while true {
            let (rows, columns, inner) = (0..<m, 0..<n, 0..<min(k, call.k))
            // Each operand's window, and the axes that shrink it, most effective first.
            var operands: [(Tensor, Range<Int>, [WritableKeyPath<MatmulBlocking, Int>])] = [
                (call.a, layout.a(rows, inner), call.transposeA ? [\.k, \.m] : [\.m, \.k]),
                (call.c, layout.c(rows, columns), [\.m, \.n]),
            ]
            // A quantized B is bound whole (its blocks do not split along rows and columns alike).
            operands.append((call.b, call.b.dtype.isQuantized ? 0..<call.b.byteCount : layout.b(inner, columns),
                             call.b.dtype.isQuantized ? [] : call.transposeB ? [\.n, \.k] : [\.k, \.n]))
            if let innerTensor = call.inner { operands.append((innerTensor, layout.c(rows, columns), [\.m, \.n])) }
            if let bias = call.bias { operands.append((bias, columns, [\.n])) }
            if let second = call.second {
                operands.append((second.a, layout.a2(rows), call.transposeA ? [] : [\.m]))
                operands.append((second.b, layout.b2(columns), call.transposeB ? [\.n] : []))
            }
            guard let (tensor, _, axes) = operands.first(where: { $0.1.count * $0.0.dtype.byteSize > limit }) else { return }
            guard let axis = axes.first(where: { self[keyPath: $0] > 256 }) else {
                throw LowRankError(.unsupported,
                                   "matmul: \(tensor.descriptor) cannot be split into windows of at most \(limit) bytes (one binding's range)",
                                   context: [("M, N, K", "\(call.m), \(call.n), \(call.k)")])
            }
            self[keyPath: axis] = (self[keyPath: axis] / 2 + 255) / 256 * 256
        }
    }
}
