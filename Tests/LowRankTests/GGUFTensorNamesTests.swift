import LowRankModels
import Testing

@Suite("GGUF tensor names")
struct GGUFTensorNamesTests {
    /// llama.cpp's `LlamaModel.permute` applied to the row indices 0..<24 with 3 heads (numpy).
    @Test func ropeRowOrderIsLlamaCppPermute() {
        let permuted = [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15, 16, 20, 17, 21, 18, 22, 19, 23]
        #expect(GGUFTensorNames.ropeRowOrder(rows: 24, heads: 3) == permuted)
        let inverse = GGUFTensorNames.inverseRopeRowOrder(rows: 24, heads: 3)!
        #expect(permuted.indices.allSatisfy { inverse[permuted[$0]] == $0 })
        #expect(GGUFTensorNames.ropeRowOrder(rows: 10, heads: 3) == nil)
    }

    @Test func namesMapBothWays() {
        for (gguf, huggingFace) in [("blk.7.attn_q", "model.layers.7.self_attn.q_proj"), ("blk.0.ffn_down", "model.layers.0.mlp.down_proj"),
                                    ("token_embd", "model.embed_tokens"), ("output", "lm_head")] {
            #expect(GGUFTensorNames.huggingFace(gguf) == huggingFace)
            #expect(GGUFTensorNames.gguf(huggingFace) == gguf)
        }
        #expect(GGUFTensorNames.huggingFace("blk.x.attn_q") == nil)
        #expect(GGUFTensorNames.gguf("model.layers.1.self_attn.rotary_emb") == nil)
    }
}
