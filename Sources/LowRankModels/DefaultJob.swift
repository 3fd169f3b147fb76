import LowRank

/// What `lowrank train` runs with neither `--model` nor `--data`: a small Llama-architecture model
/// with fixed random weights, a byte-level corpus built in, and a LoRA adapter on every projection,
/// so a fresh machine shows a whole fine-tuning run (device, loss falling, adapter and plot saved)
/// without downloading anything.
public enum DefaultJob {
    /// Byte-level (vocabulary 256), 2 blocks, 4 query heads over 2 KV heads of 16.
    public static let config = LlamaConfig(vocabularySize: 256, hiddenSize: 64, intermediateSize: 128, layerCount: 2,
                                           headCount: 4, keyValueHeadCount: 2, rmsNormEpsilon: 1e-5, ropeTheta: 10000)
    public static let modelSeed: UInt64 = 20_261_123
    public static let sequenceLength = 64

    public static func model(on backend: any Backend) throws -> LlamaModel {
        try LlamaModel(config: config, seed: modelSeed, name: modelName, on: backend)
    }

    /// The corpus as rows of `sequenceLength` bytes.
    public static func data() throws -> TokenDataset {
        try TokenDataset(rows: [Array(corpus.utf8).map { Int32($0) }], path: "<built-in corpus>",
                         vocabularySize: config.vocabularySize, maxLength: sequenceLength)
    }

    /// What adapters of the default model name as their base model.
    public static let modelName = "lowrank-default-model"

    public static var adapterSettings: AdapterSettings {
        get throws { try AdapterSettings(rank: 8, alpha: 16, targets: .allLinear, baseModel: modelName) }
    }

    public static var trainingSettings: TrainingSettings {
        var s = TrainingSettings()
        s.learningRate = 1e-2
        s.schedule = .cosine
        s.batchSize = 8
        s.steps = 200
        return s
    }

    /// The warm-up of a default run of `totalSteps`: 5% of it (10 of the 200 steps), so a shortened
    /// or lengthened run keeps the schedule's shape instead of warming up past its end.
    public static func warmupSteps(totalSteps: Int) -> Int { totalSteps / 20 }

    public static let adapterFolder = "lowrank-default-adapter"

    /// Plain text about what the engine does, repeated in spirit so a small adapter can learn its
    /// bytes: common words, spaces after full stops, and the same phrases recurring.
    public static let corpus = """
    A low-rank adapter leaves the weights of a model as they are and learns a small correction beside them. \
    The correction is the product of two thin matrices, so it has few parameters and it trains quickly. \
    The weights of the model stay frozen. The adapter learns. The optimizer moves only the small matrices. \
    When training is done, the adapter can be saved on its own, shared on its own, and merged into the weights. \
    A merged model runs as fast as the model it came from, because the correction has become part of the weights.

    The engine builds every layer of the model from a few operations: an embedding, a norm, a rotation of the \
    queries and keys, attention over the past tokens, a gated feed-forward block, and a final projection to the \
    vocabulary. Each operation has a kernel for the graphics card and a twin for the processor. The two are \
    checked against each other, and both are checked against the libraries people already trust.

    Training reads a batch of tokens, runs the model forward, measures how well each token predicts the next one, \
    and runs the model backward to find the gradient of that loss for every adapter matrix. Then the optimizer \
    takes a step. The loss falls as the adapter learns the text. A checkpoint is written now and then, so a run \
    that stops early loses only the steps since the last one, and a resumed run continues exactly where it was.

    The weights of the model stay frozen. The adapter learns. The loss falls. The adapter is saved. \
    The weights of the model stay frozen. The adapter learns. The loss falls. The adapter is saved. \
    A small model, a small corpus, and a few hundred steps are enough to watch the whole thing work: \
    the device is found, the model is built, the loss falls, the adapter is saved, and the curve is drawn.

    """
}
