import LowRank

/// PEFT's `EvaConfig`: how EVA (`init_lora_weights="eva"`, Explained Variance Adaptation) starts an
/// adapter from the training data.
public struct EVASettings: Hashable, Sendable {
    /// The largest rank a layer may take, as a multiple of its rank (at least 1; 1: ranks stay).
    public var rho: Double
    /// The cosine similarity of each direction between consecutive batches at which it has converged.
    public var tau: Double
    /// Whether positions labelled `labelMaskValue` are left out of the layers' inputs.
    public var useLabelMask: Bool
    public var labelMaskValue: Int32
    /// Whether each direction is divided by the square root of its singular value.
    public var whiten: Bool
    /// Whether a layer's alpha follows its new rank (α·r_new/r), so its scale stays.
    public var adjustScalingFactors: Bool

    public init(rho: Double = 2, tau: Double = 0.99, useLabelMask: Bool = true, labelMaskValue: Int32 = -100, whiten: Bool = false,
                adjustScalingFactors: Bool = true) {
        (self.rho, self.tau, self.useLabelMask, self.labelMaskValue) = (rho, tau, useLabelMask, labelMaskValue)
        (self.whiten, self.adjustScalingFactors) = (whiten, adjustScalingFactors)
    }

    /// PEFT's `eva_config` object (its fields by PEFT's names, each defaulted as there); errors
    /// name `path` and the field.
    public init(json: JSON, path: String) throws {
        let fields = try ConfigFields(json, path: path, what: "eva_config")
        let defaults = EVASettings()
        self.init(rho: try fields.number("rho", default: defaults.rho), tau: try fields.number("tau", default: defaults.tau),
                  useLabelMask: try fields.bool("use_label_mask", default: defaults.useLabelMask),
                  labelMaskValue: Int32(try fields.int("label_mask_value", default: Int(defaults.labelMaskValue), in: Int(Int32.min)...Int(Int32.max))),
                  whiten: try fields.bool("whiten", default: defaults.whiten),
                  adjustScalingFactors: try fields.bool("adjust_scaling_factors", default: defaults.adjustScalingFactors))
        do { try validate() } catch let error as LowRankError { throw error.adding("file", path) }
    }

    /// Refuses what PEFT's `EvaConfig` refuses.
    public func validate() throws {
        guard rho >= 1, rho.isFinite else { throw LowRankError(.invalidArgument, "EVA's rho must be a finite number >= 1 (as PEFT's EvaConfig), got \(rho)") }
        guard (0...1).contains(tau) else { throw LowRankError(.invalidArgument, "EVA's tau must be in [0, 1] (as PEFT's EvaConfig), got \(tau)") }
    }

    /// PEFT's rho above which it bounds rho by the largest dimension of any weight over r.
    static let rhoThreshold = 1000.0
    /// The most batches EVA forwards before it gives up on convergence (PEFT cycles the data without end).
    public static let maxBatches = 1000
    /// PEFT's `lowrank_seed` for its incremental PCA's randomized SVD (the test matrix here comes from our generator).
    static let seed: UInt64 = 42
}

extension ModelAdapter {
    /// A new adapter started by EVA (PEFT's `initialize_lora_eva_weights`): the data's rows, in
    /// order, in batches of `batchSize` (cycled), run through the model without an adapter, and each
    /// targeted layer's inputs (less padding, and less positions labelled `labelMaskValue` with the
    /// label mask) fold into an incremental PCA of `round(r·rho)` directions until the ones its
    /// rank needs converge (`tau`); layers with the same input (q, k and v; gate and up) share one.
    /// The budget of the targeted ranks is then shared out by explained variance across layers
    /// (PEFT's `rank_pattern`; a layer left with none is not adapted), A is each layer's top
    /// directions (divided by √S with `whiten`), B = 0, and with `adjustScalingFactors` α·r_new/r
    /// becomes its `alpha_pattern`; the settings record them as PEFT's config does.
    public convenience init(eva settings: AdapterSettings, _ eva: EVASettings, on model: LlamaModel, data: TokenDataset, batchSize: Int) throws {
        let start = try EVAStart(settings, eva, model: model, data: data, batchSize: batchSize)
        try self.init(settings: start.settings, on: model, seed: 0)
        for (path, layer) in layers { try layer.lora.a.assign(start.a[path]!) }
    }
}

/// What EVA computes: the settings with the redistributed ranks and alphas, and each kept layer's A.
private struct EVAStart {
    var settings: AdapterSettings
    var a: [String: [Float]] = [:]

    /// One incremental PCA for the layers that read the same input (the first of them is PEFT's hook).
    struct Hook {
        var layers: [String]
        var pca: IncrementalPCA
        var converged: [Bool]
        /// Whether the directions its layers' ranks need have converged, so it reads no more batches
        /// (PEFT's hook removed; put back if the ranks later need one that has not).
        var settled = false
    }

    init(_ settings: AdapterSettings, _ eva: EVASettings, model: LlamaModel, data: TokenDataset, batchSize: Int) throws {
        try eva.validate()
        guard !settings.dora else { throw LowRankError(.unsupported, "EVA here initialises LoRA, not DoRA") }
        guard data.sequenceLengths == nil else { throw LowRankError(.unsupported, "EVA reads rows of one sequence each, not packed rows (--pack)") }
        guard batchSize >= 1, !data.rows.isEmpty else { throw LowRankError(.invalidArgument, "EVA needs training data and a batch size of at least 1") }
        let targeted = try settings.moduleMatcher()
        let modules = model.linearModules.map(\.path).filter(targeted)
        guard !modules.isEmpty else { throw LowRankError(.invalidArgument, "the adapter's target modules \(settings.targets) match no linear layer of the model") }

        var rho = eva.rho
        if rho > EVASettings.rhoThreshold {
            let largest = model.tensors.flatMap(\.tensor.shape.dims).max() ?? 0
            rho = min(rho, Double(largest / settings.rank))
        }
        let rank = Dictionary(uniqueKeysWithValues: modules.map { ($0, settings.lora(for: $0).rank) })
        let budget = modules.reduce(0) { $0 + rank[$1]! }
        var maxComponents = rank.mapValues { Int((Double($0) * rho).rounded(.toNearestOrEven)) }

        let batches = stride(from: 0, to: data.rows.count, by: batchSize).map { $0..<min($0 + batchSize, data.rows.count) }
        var plans: [[Int]: LayerInputsPlan] = [:]
        func plan(_ batch: TokenBatch) throws -> LayerInputsPlan {
            let key = [batch.rows, batch.sequence]
            let plan = try plans[key] ?? LayerInputsPlan(model: model, modules: Set(modules), rows: batch.rows, sequence: batch.sequence)
            plans[key] = plan
            return plan
        }
        func inputs(_ rows: Range<Int>) throws -> (values: [[Float]], mask: [Bool]) {
            let batch = data.batch(rows)
            // PEFT's prepare_model_inputs_fn_language_modeling: the attention mask, and the labels (unshifted) not masked.
            let mask = rows.flatMap { r in
                let labels = data.labels?[r] ?? data.rows[r]
                return (0..<batch.sequence).map { i in i < data.rows[r].count && (!eva.useLabelMask || labels[i] != eva.labelMaskValue) }
            }
            return (try plan(batch).run(batch, on: model.backend), mask)
        }

        // PEFT's first forward hashes each layer's input to find the layers that read the same one; the graph says it.
        let readers = try plan(data.batch(batches[0])).readers
        for group in readers {
            let most = group.map { maxComponents[$0]! }.max()!
            for path in group { maxComponents[path] = most }
        }
        let features = Dictionary(uniqueKeysWithValues: try modules.map { ($0, try model.weight($0 + ".weight").shape[1]) })
        var hooks = try readers.map { group in
            let (count, d) = (maxComponents[group[0]]!, features[group[0]]!)
            guard count <= d else {
                throw LowRankError(.invalidArgument, "EVA's round(r·rho) = \(count) directions exceed the \(d) inputs of \(group[0]) (as PEFT's IncrementalPCA refuses it)")
            }
            return Hook(layers: group, pca: try IncrementalPCA(count: count, features: d, seed: EVASettings.seed), converged: Array(repeating: false, count: count))
        }
        // PEFT's layer_hook_map order: each hook's own layer, then the layers that share one.
        let order = hooks.map { $0.layers[0] } + hooks.flatMap { $0.layers.dropFirst() }
        let hookOf = Dictionary(uniqueKeysWithValues: hooks.indices.flatMap { h in hooks[h].layers.map { ($0, h) } })

        func distribution() -> [String: Int] {
            let values = order.flatMap { path in hooks[hookOf[path]!].pca.explainedVarianceRatio.prefix(maxComponents[path]!).map { (path, $0) } }
            // torch's argsort(descending=True) of these; equal values (layers sharing an input) in this order.
            let ranked = values.indices.sorted { values[$0].1 > values[$1].1 || (values[$0].1 == values[$1].1 && $0 < $1) }
            var counts = Dictionary(uniqueKeysWithValues: modules.map { ($0, 0) })
            for i in ranked.prefix(budget) { counts[values[i].0]! += 1 }
            for hook in hooks {
                for path in hook.layers.dropFirst() where counts[hook.layers[0]]! < counts[path]! {
                    (counts[hook.layers[0]], counts[path]) = (counts[path]!, counts[hook.layers[0]]!)
                }
            }
            return counts
        }

        var ranks = maxComponents
        for step in 0...EVASettings.maxBatches {
            for h in hooks.indices { hooks[h].settled = hooks[h].converged.prefix(ranks[hooks[h].layers[0]]!).allSatisfy { $0 } }
            if hooks.allSatisfy(\.settled) { break }
            guard step < EVASettings.maxBatches else {
                throw LowRankError(.numerical, "EVA's directions did not converge to a cosine similarity of tau = \(eva.tau) within \(EVASettings.maxBatches) batches (a lower tau converges sooner)")
            }
            let (values, mask) = try inputs(batches[step % batches.count])
            let tokens = mask.indices.filter { mask[$0] }
            for h in hooks.indices where !hooks[h].settled {
                let d = hooks[h].pca.features
                guard tokens.count >= hooks[h].pca.count else { continue }  // PEFT skips a batch with fewer tokens than directions
                let x = tokens.flatMap { values[h][($0 * d)..<(($0 + 1) * d)] }
                let previous = hooks[h].pca.samplesSeen > 0 ? hooks[h].pca.components : nil
                try hooks[h].pca.partialFit(x, rows: tokens.count)
                if let previous { hooks[h].converged = hooks[h].pca.similarity(to: previous).map { $0 >= eva.tau } }
            }
            if hooks.allSatisfy({ $0.pca.samplesSeen > 0 }) { ranks = distribution() }
        }

        // PEFT whitens its hook's directions in place through each layer's view of them, and every
        // layer's A is such a view: a direction is divided by √S once for each layer of the group
        // whose rank reaches it (q, k and v's shared ones by S^1.5), and all take the result.
        // Reproduced, to start as PEFT's.
        var directions = hooks.map(\.pca.components)
        for path in order where eva.whiten {
            let (h, r) = (hookOf[path]!, ranks[path]!)
            let d = hooks[h].pca.features
            for i in 0..<r * d { directions[h][i] /= hooks[h].pca.singularValues[i / d].squareRoot() }
        }
        // PEFT's _load_eva_state_dict: the ranks and alphas that differ from r and lora_alpha become the patterns.
        var kept: [String] = [], rankPattern: [String: Int] = [:], alphaPattern: [String: Float] = [:]
        for path in modules {
            let (r, h) = (ranks[path]!, hookOf[path]!)
            guard r > 0 else { continue }
            a[path] = directions[h].prefix(r * hooks[h].pca.features).map(Float.init)
            var alpha = Double(settings.lora(for: path).alpha)
            if r != rank[path]!, eva.adjustScalingFactors { alpha *= Double(r) / Double(rank[path]!) }
            if r != settings.rank { rankPattern[path] = r }
            if Float(alpha) != settings.alpha { alphaPattern[path] = Float(alpha) }
            kept.append(path)
        }
        var s = settings
        (s.targets, s.rankPattern, s.alphaPattern) = (.names(kept), rankPattern, alphaPattern)
        try s.validate()
        self.settings = s
    }
}
