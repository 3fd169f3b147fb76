import LowRankCore

/// `Shaders/attention.comp`: FlashAttention-2's tiling, a workgroup of 64 per (query tile, KV head)
/// forward and for dq, a query tile holding every query head of the KV head's group, and per
/// (key tile, KV head) for dk and dv.
struct AttentionKernel: Kernel {
    enum Pass: KernelPass {
        /// out and logsumexp per (query tile, KV head).
        case forward
        /// dq per (query tile, KV head).
        case queryGradient
        /// dk and dv per (key tile, KV head).
        case keyValueGradient
        /// `cachedAttention`: the forward pass over a KV cache's first rows and then the new ones.
        case cachedForward

        var isForward: Bool { self == .forward || self == .cachedForward }
    }

    /// The rows of a query or key tile and the columns a tile holds: each pass's shared memory
    /// grows with both, so the host takes the largest tile that fits the device.
    struct Tile: Hashable {
        /// `BLOCK`: queries ((row, query head) pairs) and key rows per tile.
        var block: Int
        /// `HEAD_DIM_MAX`: a multiple of 64, the head dim rounded up.
        var headDimMax: Int

        static let blocks = [32, 16, 8, 4]
        static let headDims = [64, 128, 256]
        /// The most shared memory a tile is chosen for (64 KiB, the most real GPUs give a workgroup
        /// in Vulkan): every tile within it is a variant that `ShaderTests` compiles.
        static let sharedLimit = 65536

        /// The shader's `shared` arrays in `pass`: f32 tiles of q, k and v (and G backward) with
        /// rows of `headDimMax + 1`, a block² of scores (and of dS backward), and per-row scalars.
        func sharedBytes(_ pass: Pass) -> Int {
            let (tiles, squares, rows) = pass.isForward ? (3, 1, 1) : (4, 2, 2)
            return 4 * (tiles * block * (headDimMax + 1) + squares * block * block + rows * block)
        }

        /// The largest tile that holds a head of `headDim` columns within `sharedBytes`; nil when
        /// no tile does.
        static func largest(headDim: Int, pass: Pass, sharedBytes: Int) -> Tile? {
            guard let columns = headDims.first(where: { $0 >= headDim }) else { return nil }
            return blocks.lazy.map { Tile(block: $0, headDimMax: columns) }.first { $0.sharedBytes(pass) <= sharedBytes }
        }
    }

    struct Push: BitwiseCopyable {
        var rows: UInt32
        var qHeads: UInt32
        var kvHeads: UInt32
        var headDim: UInt32
        var sequence: UInt32
        var scale: Float
        /// The KV cache's rows (`cachedForward`; 0 otherwise).
        var cacheRows: UInt32
    }

    static let shader = Shader.attention
    var pass: Pass
    var tile: Tile
    var q: DType
    var k: DType
    var v: DType
    /// G's and out's dtypes, in the backward passes.
    struct Backward: Hashable {
        var gradient: DType
        var out: DType
    }

    var backward: Backward?
    var c: DType
    /// `SEQUENCE_STARTS`: a packed attention, its sequence starts bound after the pass's other buffers.
    var packed: Bool

    var defines: [String: String] {
        pass.defines + ["BLOCK": "\(tile.block)u", "HEAD_DIM_MAX": "\(tile.headDimMax)u"] + (packed ? ["SEQUENCE_STARTS": "1"] : [:])
            + q.operandDefines("Q") + k.operandDefines("K") + v.operandDefines("V") + c.operandDefines("C", written: true)
            + (backward.map { $0.gradient.operandDefines("G") + $0.out.operandDefines("O") } ?? [:])
    }

    /// Every tile of every pass within `Tile.sharedLimit`, each over the dtype cover, packed or not
    /// (the cached forward never is).
    static var variants: [AttentionKernel] {
        let tiles = Tile.headDims.flatMap { d in Tile.blocks.map { Tile(block: $0, headDimMax: d) } }
        return DType.cover(operands: 6).flatMap { t in
            Pass.allCases.flatMap { pass in
                (pass == .cachedForward ? [false] : [false, true]).flatMap { packed in
                    tiles.filter { $0.sharedBytes(pass) <= Tile.sharedLimit }.map {
                        AttentionKernel(pass: pass, tile: $0, q: t[0], k: t[1], v: t[2],
                                        backward: pass.isForward ? nil : Backward(gradient: t[3], out: t[4]), c: t[5], packed: packed)
                    }
                }
            }
        }
    }
}

extension VulkanBackend {
    /// q, k, v [, sequence starts] -> out, logsumexp.
    func encodeAttention(_ o: AttentionOptions, _ inputs: [Tensor], _ outputs: [Tensor]) throws {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2])
        let bindings: [TensorBinding] = [.read(q), .read(k), .read(v), .write(outputs[0]), .write(outputs[1])] + inputs.dropFirst(3).map { .read($0) }
        if let tile = attentionCoopmatTile(.forward, headDim: q.shape[2], dtypes: [q.dtype, k.dtype, v.dtype]) {
            let constants = AttentionCoopmatKernel.Constants(tile: tile, q: q.dtype, k: k.dtype, v: v.dtype, gradient: .f32, out: .f32, c: outputs[0].dtype,
                                                             direct: tile.readsKeysAndValues(.forward, k: k.dtype, v: v.dtype, headDim: q.shape[2], rows: k.shape[0]))
            return try dispatchAttentionCoopmat(.forward, tile, constants, bindings, push: attentionPush(o, q: q, k: k),
                                                rows: q.shape[0] * q.shape[1] / k.shape[1], packed: o.packed)
        }
        let tile = try attentionTile(headDim: q.shape[2], pass: .forward)
        let kernel = AttentionKernel(pass: .forward, tile: tile, q: q.dtype, k: k.dtype, v: v.dtype, backward: nil, c: outputs[0].dtype, packed: o.packed)
        try dispatch(kernel, bindings, push: attentionPush(o, q: q, k: k), groups: (tiles(q.shape[0] * q.shape[1] / k.shape[1], tile), k.shape[1], 1))
    }

    /// q, k, v, the key and value caches, past -> out, logsumexp: one sequence, the caches' first
    /// `past` rows (read by the kernel) before k and v.
    func encodeCachedAttention(scale: Float?, _ operands: CachedAttentionOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (q, k, v) = (operands.q, operands.k, operands.v)
        let tile = try attentionTile(headDim: q.shape[2], pass: .cachedForward)
        let kernel = AttentionKernel(pass: .cachedForward, tile: tile, q: q.dtype, k: k.dtype, v: v.dtype, backward: nil, c: outputs[0].dtype, packed: false)
        var push = attentionPush(AttentionOptions(sequenceLength: max(q.shape[0], 1), scale: scale), q: q, k: k)
        push.cacheRows = UInt32(operands.keyCache.shape[0])
        try dispatch(kernel, [.read(q), .read(k), .read(v), .write(outputs[0]), .write(outputs[1]),
                              .read(operands.keyCache), .read(operands.valueCache), .read(operands.past)],
                     push: push, groups: (tiles(q.shape[0] * q.shape[1] / k.shape[1], tile), k.shape[1], 1))
    }

    /// G, q, k, v, out, logsumexp [, sequence starts] -> dq (per (query tile, KV head)), dk and dv (per (key tile, KV head)).
    func encodeAttentionBackward(_ o: AttentionOptions, _ operands: AttentionBackwardOperands<Tensor>, _ outputs: [Tensor]) throws {
        let (g, q, k, v, out, lse) = (operands.gradient, operands.q, operands.k, operands.v, operands.out, operands.logsumexp)
        let reads: [TensorBinding] = [.read(q), .read(k), .read(v), .read(g), .read(out), .read(lse)]
        let push = attentionPush(o, q: q, k: k)
        for (pass, coopmatPass) in [(AttentionKernel.Pass.queryGradient, AttentionCoopmatKernel.Pass.queryGradient), (.keyValueGradient, .keyValueGradient)] {
            let c = outputs[pass == .queryGradient ? 0 : 1].dtype
            // dq's tiles are of queries, T·(H_q / H_kv) per KV head; dk's and dv's of key rows.
            let (writes, rows): ([TensorBinding], Int) = pass == .queryGradient
                ? ([.write(outputs[0])], q.shape[0] * q.shape[1] / k.shape[1]) : ([.write(outputs[1]), .write(outputs[2])], k.shape[0])
            let bindings = reads + writes + (operands.starts.map { [.read($0)] } ?? [])
            if let tile = attentionCoopmatTile(coopmatPass, headDim: q.shape[2], dtypes: [q.dtype, k.dtype, v.dtype, g.dtype, out.dtype]) {
                let constants = AttentionCoopmatKernel.Constants(tile: tile, q: q.dtype, k: k.dtype, v: v.dtype, gradient: g.dtype, out: out.dtype, c: c,
                                                                 direct: tile.readsKeysAndValues(coopmatPass, k: k.dtype, v: v.dtype, headDim: q.shape[2], rows: k.shape[0]))
                try dispatchAttentionCoopmat(coopmatPass, tile, constants, bindings, push: push, rows: rows, packed: o.packed)
                continue
            }
            let tile = try attentionTile(headDim: q.shape[2], pass: pass)
            let kernel = AttentionKernel(pass: pass, tile: tile, q: q.dtype, k: k.dtype, v: v.dtype,
                                         backward: .init(gradient: g.dtype, out: out.dtype), c: c, packed: o.packed)
            try dispatch(kernel, bindings, push: push, groups: (tiles(rows, tile), k.shape[1], 1))
        }
    }

    /// Why attention cannot run here: no tile holds the head within the device's shared memory.
    func attentionProblem(headDim: Int) -> String? {
        let shared = attentionSharedBytes
        let fits = AttentionKernel.Pass.allCases.allSatisfy { AttentionKernel.Tile.largest(headDim: headDim, pass: $0, sharedBytes: shared) != nil }
        return fits ? nil : "attention.comp holds a head of at most \(AttentionKernel.Tile.headDims.last!) columns in tiles within the \(shared) bytes of shared memory of \(info.name); this one has \(headDim)"
    }

    private func attentionTile(headDim: Int, pass: AttentionKernel.Pass) throws -> AttentionKernel.Tile {
        if let problem = attentionProblem(headDim: headDim) { throw LowRankError(.unsupported, problem) }
        return AttentionKernel.Tile.largest(headDim: headDim, pass: pass, sharedBytes: attentionSharedBytes)!
    }

    private var attentionSharedBytes: Int { min(info.limits.maxComputeSharedMemoryBytes, AttentionKernel.Tile.sharedLimit) }

    private func tiles(_ rows: Int, _ tile: AttentionKernel.Tile) -> Int { (rows + tile.block - 1) / tile.block }

    private func attentionPush(_ o: AttentionOptions, q: Tensor, k: Tensor) -> AttentionKernel.Push {
        .init(rows: UInt32(q.shape[0]), qHeads: UInt32(q.shape[1]), kvHeads: UInt32(k.shape[1]), headDim: UInt32(q.shape[2]),
              sequence: UInt32(o.sequenceLength), scale: o.scale(headDim: q.shape[2]), cacheRows: 0)
    }
}
