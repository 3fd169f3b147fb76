import LowRank
import LowRankBench
import LowRankModels

extension BenchContext {
    /// The vocabulary of `train-model`'s decoder (Llama 2's and TinyLlama's).
    static let trainModelVocabulary = 32000
    /// Its decoder blocks.
    static let trainModelLayers = 4
    /// Its rows per step; `t` tokens are split over them.
    static let trainModelRows = 2

    /// The Llama decoder `train-model` trains: hidden size d_in, intermediate size d_out, heads of
    /// 64 columns with 8 query heads per KV head (one KV head at least), `trainModelLayers` blocks.
    static func trainModelConfig(_ shape: LayerShape) -> LlamaConfig {
        let heads = max(1, shape.dIn / 64)
        return LlamaConfig(vocabularySize: trainModelVocabulary, hiddenSize: shape.dIn, intermediateSize: shape.dOut,
                           layerCount: trainModelLayers, headCount: heads, keyValueHeadCount: heads % 8 == 0 ? heads / 8 : 1, rmsNormEpsilon: 1e-5)
    }

    /// Token `i` of row `row` of every step's batch; tools/peft_train_bench.py draws the same.
    static func trainModelToken(row: Int, _ i: Int) -> Int32 {
        Int32((row * 100_003 + i * 7919 + 13) % trainModelVocabulary)
    }

    /// The whole training step of a Llama decoder as `lowrank train` takes it (`AdapterTraining`:
    /// the `CausalLMPlan` forward pass with the fused LM head and loss, the backward pass, an AdamW
    /// step), with LoRA or DoRA (r, α = 2r, no dropout) on all seven projections of every block;
    /// weights random, in the run's dtype; with `microBatches` above 1, also a step accumulated over
    /// that many micro-batches of the batch. tools/peft_train_bench.py runs transformers + PEFT on
    /// the same model, batch and adapter, and can drive this suite beside it.
    func trainModelSuite() throws -> [BenchRecord] {
        let config = Self.trainModelConfig(shape)
        guard shape.t % Self.trainModelRows == 0, shape.t >= 2 * Self.trainModelRows else {
            throw LowRankError(.invalidArgument, "train-model splits T over \(Self.trainModelRows) rows of at least 2 tokens, got T = \(shape.t)")
        }
        let model = try LlamaModel(config: config, seed: 1, dtype: dtype, on: backend)
        let sequence = shape.t / Self.trainModelRows
        let batch = TokenBatch((0..<Self.trainModelRows).map { row in (0..<sequence).map { Self.trainModelToken(row: row, $0) } })
        var settings = TrainingSettings()
        settings.learningRate = 1e-4

        // Forward and the gradient to the input of every frozen product (no weight gradients),
        // the adapters' own products, attention (forward, and a backward that recomputes the
        // probabilities), and the optimizer's few flops per parameter.
        let t = Double(shape.t), s = Double(sequence), d = Double(config.hiddenSize)
        let blockParameters: Int = config.projections.reduce(0) { $0 + $1.outFeatures * $1.inFeatures }
        let projectionParameters = Double(blockParameters * config.layerCount)
        let headParameters = Double(config.vocabularySize) * d
        let attention = 7 * s * s * Double(Self.trainModelRows * config.headCount * config.headDim * config.layerCount)

        return try adapters.flatMap { kind in
            let adapterSettings = try AdapterSettings(rank: shape.r, alpha: Float(2 * shape.r), dora: kind == .dora,
                                                      targets: .names(AdapterSettings.projectionNames))
            let adapter = try ModelAdapter(settings: adapterSettings, on: model, seed: 2)
            let training = try AdapterTraining(model: model, adapter: adapter, settings: settings, totalSteps: nil)
            let adapterCount: Int = adapter.parameters.reduce(0) { $0 + $1.tensor.shape.count }
            let adapterParameters = Double(adapterCount)
            let flops = 4 * t * (projectionParameters + headParameters) + 12 * t * adapterParameters + attention + 14 * adapterParameters
            let bytes = 2 * Double(model.weightBytes) + 20 * adapterParameters
            let step: BenchCase = ("step", kind.rawValue, flops, bytes, {
                _ = try training.step(on: batch)
                return adapter.parameters.map(\.tensor)
            })
            // An accumulated step: its micro-batches queued, their losses read after the optimizer step.
            let micro = microBatches
            let accumulatedFlops = Double(micro) * (flops - 14 * adapterParameters) + 14 * adapterParameters
            let accumulated: BenchCase = ("step", "\(kind.rawValue), \(micro) micro-batches", accumulatedFlops, Double(micro) * bytes, {
                for _ in 0..<micro { try training.queueMicroBatch(batch) }
                _ = try training.applyAccumulated()
                return adapter.parameters.map(\.tensor)
            })
            let records = try measure("train-model", [step] + (micro > 1 ? [accumulated] : []))
            if timer.profile {
                // One more step with its op kinds timed, as `lowrank train --profile` prints them.
                try backend.startProfiling()
                _ = try training.step(on: batch)
                printToStandardError(StepProfile(steps: 1, backends: [try backend.stopProfiling()]).table)
                if microBatches > 1 { try printAccumulationHostTimes(training, batch) }
            }
            return records
        }
    }

    /// The host's share of an accumulated step, its micro-batches queued (`queueMicroBatch`, their
    /// losses read once, after the optimizer step) or each micro-batch's loss read before the next
    /// is issued (`accumulate`, as `Trainer` took accumulated steps before): the time to issue the
    /// micro-batches, then the whole step; and each way's command counts (encoded afresh, as
    /// profiling encodes every repeat).
    private func printAccumulationHostTimes(_ training: AdapterTraining, _ batch: TokenBatch) throws {
        let clock = ContinuousClock(), micro = microBatches
        for queued in [false, true] {
            let issue = { for _ in 0..<micro { if queued { try training.queueMicroBatch(batch) } else { try training.accumulate(batch) } } }
            try backend.startProfiling()
            try issue()
            _ = try training.applyAccumulated()
            let profile = StepProfile(steps: 1, backends: [try backend.stopProfiling()]).table
            var issued: [Double] = [], whole: [Double] = []
            for _ in 0..<max(timer.runs, 5) {
                try backend.synchronize()
                let start = clock.now
                try issue()
                let queuedAt = clock.now
                _ = try training.applyAccumulated()
                try backend.synchronize()
                issued.append((queuedAt - start).inSeconds)
                whole.append((clock.now - start).inSeconds)
            }
            let median = { (v: [Double]) in v.sorted()[v.count / 2] * 1e3 }
            let how = queued ? "queued, losses read after the step" : "each loss read before the next"
            printToStandardError("  \(micro) micro-batches, \(how): " + String(format: "issued in %.3f ms (median of %d), the step with its wait %.3f ms",
                                                                                median(issued), issued.count, median(whole)))
            printToStandardError(profile)
        }
    }
}

/// `--adapter`: which adapters `train-model` trains.
enum TrainedAdapter: String, CaseIterable, Sendable {
    case lora = "LoRA", dora = "DoRA"
}
