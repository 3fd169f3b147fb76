import LowRank

/// llama.cpp's tensor names for the `llama` architecture beside Hugging Face's (its
/// `gguf-py/gguf/tensor_mapping.py`), and the row order its converter gives the query and key
/// projections. The GGUF reader maps and un-permutes with these; the GGUF writers map and permute.
public enum GGUFTensorNames {
    /// Per-layer tensors: llama.cpp's suffix after `blk.N.` beside the Hugging Face suffix after
    /// `model.layers.N.`.
    public static let layerTensors: [(gguf: String, huggingFace: String)] = [
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ]

    /// Whole-model tensors (base names, without `.weight`).
    public static let modelTensors: [(gguf: String, huggingFace: String)] = [
        ("token_embd", "model.embed_tokens"),
        ("output_norm", "model.norm"),
        ("output", "lm_head"),
    ]

    /// The Hugging Face module name (`model.layers.3.self_attn.q_proj`) of a GGUF one (`blk.3.attn_q`),
    /// or nil for a name outside the llama architecture's.
    public static func huggingFace(_ gguf: String) -> String? {
        if let pair = modelTensors.first(where: { $0.gguf == gguf }) { return pair.huggingFace }
        let parts = gguf.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0,
              let pair = layerTensors.first(where: { $0.gguf == parts[2] }) else { return nil }
        return "model.layers.\(layer).\(pair.huggingFace)"
    }

    /// The GGUF module name of a Hugging Face one, or nil for a name outside the llama architecture's.
    public static func gguf(_ huggingFace: String) -> String? {
        if let pair = modelTensors.first(where: { $0.huggingFace == huggingFace }) { return pair.gguf }
        let prefix = "model.layers."
        guard huggingFace.hasPrefix(prefix) else { return nil }
        let rest = huggingFace.dropFirst(prefix.count).split(separator: ".", maxSplits: 1)
        guard rest.count == 2, let layer = Int(rest[0]), layer >= 0,
              let pair = layerTensors.first(where: { $0.huggingFace == rest[1] }) else { return nil }
        return "blk.\(layer).\(pair.gguf)"
    }

    /// llama.cpp's converter reorders the rows of `q_proj` and `k_proj` within each head from
    /// Hugging Face's rotate-half layout to interleaved pairs (its `LlamaModel.permute`; `heads` is
    /// the KV head count for `k_proj`). Row `i` of the GGUF tensor is row `map[i]` of the Hugging
    /// Face one. Whole rows move, so a block-quantized tensor (blocks run along rows) is permuted
    /// by moving its rows' bytes. `nil` when `rows` does not split into `heads` heads of even size.
    public static func ropeRowOrder(rows: Int, heads: Int) -> [Int]? {
        guard heads > 0, rows % (2 * heads) == 0 else { return nil }
        let half = rows / heads / 2
        return (0..<rows).map { row in
            let (head, within) = row.quotientAndRemainder(dividingBy: 2 * half)
            let (pair, side) = within.quotientAndRemainder(dividingBy: 2)
            return head * 2 * half + side * half + pair
        }
    }

    /// The inverse of `ropeRowOrder`: row `i` of the Hugging Face tensor is row `map[i]` of the GGUF
    /// one (transformers' `reverse_permute_weights`).
    public static func inverseRopeRowOrder(rows: Int, heads: Int) -> [Int]? {
        guard let forward = ropeRowOrder(rows: rows, heads: heads) else { return nil }
        var inverse = [Int](repeating: 0, count: rows)
        for (ggufRow, huggingFaceRow) in forward.enumerated() { inverse[huggingFaceRow] = ggufRow }
        return inverse
    }
}
