import LowRank
import LowRankModels
import Testing

/// What one decoder block costs in dispatches in a Vulkan training step (forward and backward,
/// the optimizer aside), by op kind: issue #21's "fewer than 30 dispatches per layer plus a
/// constant". The tables are today's attribution (README, "Dispatches per decoder block"); a
/// change that fuses ops lowers them here.
@Suite("Decoder dispatches")
struct DecoderDispatchTests {
    /// Adapters on all seven projections; each case's dispatches per block by op kind.
    static let cases: [(dora: Bool, checkpointing: Bool, perBlock: [Op.Kind: Int])] = {
        // Two norms, one rotation of q and k, attention, the gated activation, the residual add
        // and the three gradient sums (q/k/v's d x and gate/up's), backward as the second figure.
        let common: [Op.Kind: Int] = [.rmsNorm: 2, .rmsNormBackward: 2, .rope: 2, .attention: 1, .attentionBackward: 2,
                                      .gatedActivation: 1, .gatedActivationBackward: 1, .add: 4]
        // Under checkpointing the region's forward runs again in backward (the residual add's output is the region's).
        let recomputed: [Op.Kind: Int] = [.rmsNorm: 2, .rope: 1, .attention: 1, .gatedActivation: 1]
        let twice = { (forward: [Op.Kind: Int]) in common.merging(forward) { $0 + $1 }.merging(recomputed) { $0 + $1 } }
        // LoRA: u = x·Aᵀ, then x·Wᵀ with the branch in its epilogue; backward du and dB, dA, dx.
        // DoRA adds A·Wᵀ, A·Aᵀ and the norm's row dot (forming B·(A·Aᵀ) at this rank) before those two.
        return [(false, false, common.merging([.loraForward: 14, .loraBackward: 21]) { $1 }),
                (false, true, twice([.loraForward: 28, .loraBackward: 21])),
                (true, false, common.merging([.doraForward: 35, .doraBackward: 21]) { $1 }),
                (true, true, twice([.doraForward: 70, .doraBackward: 21]))]
    }()

    /// One training step's dispatches of a model of three blocks less those of one, halved: a
    /// block's. The first block's q, k and v form no d x (nothing before them trains), so its
    /// adapters' backward takes 3 × 3 − 3 dispatches plus 4 × 3.
    @Test(arguments: cases.indices)
    func perBlockByOpKind(_ index: Int) throws {
        let (dora, checkpointing, expected) = Self.cases[index]
        try onBackend(.vulkan) { shared in
            let vulkan = try (shared as! VulkanBackend).sibling()
            func dispatches(blocks: Int) throws -> [Op.Kind: Int] {
                var config = DefaultJob.config
                config.layerCount = blocks
                let model = try LlamaModel(config: config, seed: 7, on: vulkan)
                let adapter = try ModelAdapter(settings: try AdapterSettings(rank: 4, alpha: 8, dora: dora, targets: .allLinear), on: model, seed: 3)
                let plan = try CausalLMPlan(model: model, adapter: adapter, batch: 1, sequence: 16, training: true, checkpointing: checkpointing)
                try vulkan.startProfiling()
                _ = try plan.run(TokenBatch([(0..<16).map { Int32($0 * 11 % 256) }]), seed: 1).loss.floats()
                return try vulkan.stopProfiling().ops.mapValues(\.dispatches)
            }
            let (one, three) = (try dispatches(blocks: 1), try dispatches(blocks: 3))
            let twoBlocks = three.merging(one) { $0 - $1 }.filter { $0.value != 0 }
            #expect(twoBlocks == expected.mapValues { 2 * $0 }, "dispatches of two blocks: \(twoBlocks.sorted { $0.key.rawValue < $1.key.rawValue })")
            #expect(one[dora ? .doraBackward : .loraBackward] == 7 * 3 - 3)
        }
    }
}
