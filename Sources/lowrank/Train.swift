import ArgumentParser
import LowRank
import LowRankModels

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a Llama-family checkpoint with a LoRA, rsLoRA or DoRA adapter (optionally on quantized weights).",
        discussion: """
        With neither --model nor --data, trains the built-in default: a small Llama-architecture model with fixed \
        random weights on a built-in byte-level corpus, saving the adapter and loss.svg to \(DefaultJob.adapterFolder)/.

        \(dataFormatsHelp) Each row is one sequence (split into --seq-len windows when longer); rows of a batch are \
        padded, and the loss is the mean next-token cross-entropy over every predicted token, as transformers computes it.

        Validation: with --valid-data, the loss over that file every --eval-every steps and at the end is printed, \
        drawn in loss.svg and recorded in each checkpoint's trainer_state.json; the best step's checkpoint is kept \
        and named there as best_checkpoint.
        """)

    @Option(help: "A Hugging Face model folder (config.json and safetensors weights) or a GGUF file (llama architecture).") var model: String?
    @Option(help: "Training data: .jsonl (token ids, text, prompt/completion or messages) or .npy token ids.") var data: String?
    @Option(help: "Validation data, in the same forms as --data.") var validData: String?
    @Option(help: "Validate every N steps (and at the end; default: once, at the end).") var evalEvery: Int?
    @Option(help: "Where the adapter, checkpoints and loss.svg go (default: adapter-out, or the default job's folder).")
    var adapterOut: String?
    @Option(help: "Start from this PEFT adapter folder instead of a new adapter (its r, alpha, targets and DoRA setting apply).")
    var initAdapter: String?
    @Flag(help: "Load --init-adapter even if it names another base model or architecture (its tensors' shapes are still checked).")
    var forceAdapter = false

    @Option(help: "Adapter rank (1...\(AdapterSettings.maxRank)).") var r = 8
    @Option(help: "LoRA alpha (the scale is alpha / r, or alpha / √r with --rslora).") var alpha: Float = 16
    @Option(help: "Dropout on the adapter's input.") var dropout: Float = 0
    @Flag(help: "rsLoRA scaling (alpha / √r).") var rslora = false
    @Flag(help: "DoRA: a trained magnitude per output row.") var dora = false
    @Option(help: "Comma-separated modules (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or all-linear.")
    var targets = "q_proj,v_proj"
    @Option(help: "Quantize the frozen projections at load.") var quantize: Quantization?

    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "Linear warm-up steps (default: 0; 5% of the steps for the built-in default job).") var warmup: Int?
    @Option(help: "The learning rate's schedule after warm-up.") var schedule: LearningRateSchedule.Kind?
    @Option(help: "AdamW's decoupled weight decay.") var weightDecay = 0.01
    @Option(help: "Clip the global gradient norm to this (0: no clipping, as Hugging Face's max_grad_norm).") var clip: Float?

    @Option(help: "Rows per batch (per process under mpirun).") var batchSize: Int?
    @Option(help: "Micro-batches of --batch-size rows per optimizer step, their gradients summed weighted by predicted tokens.")
    var gradAccumulationSteps = 1
    @Option(help: "Split rows into windows of at most this many tokens.") var seqLen: Int?
    @Option(help: "Optimizer steps (instead of --epochs).") var steps: Int?
    @Option(help: "Passes over the data (default 1).") var epochs: Int?
    @Flag(help: "Recompute each block's activations in backward instead of keeping them.") var gradCheckpointing = false
    @Option(name: .customLong("residual-dtype"), help: """
        Hold the hidden state between decoder blocks (what --grad-checkpointing keeps of each block) in this dtype (default: \
        the frozen weights' compute dtype, as PyTorch holds a 16-bit model's hidden states: bf16 or f16 for a bf16 or f16 \
        checkpoint, also under --quantize; f32 for --dtype f32, f32 checkpoints and GGUF-quantized models). bf16 or f16 round \
        each block's output and its gradient to nearest even and halve what checkpointing keeps; every block still computes in f32.
        """) var residualDType: FloatDType?
    @Option(help: "Seed of the adapter's initialisation, the data order and dropout.") var seed: UInt64 = 0
    @Flag(help: "Take rows in file order.") var noShuffle = false
    @Option(help: "Write a checkpoint every N steps (always at the end).") var saveEvery: Int?
    @Flag(help: "Continue from the newest checkpoint in the output folder, bit for bit.") var resume = false
    @Flag(help: "Count each step's ops (on a GPU its dispatches, barriers and submissions) and time each op kind; print a table at the end and record it in the last checkpoint's trainer_state.json.")
    var profile = false

    @OptionGroup(title: "PEFT's LoraConfig fields, LoRA+ and initialisation") var peft: PEFTOptions
    @OptionGroup var textData: TextDataOptions
    @OptionGroup var device: DeviceOptions
    @OptionGroup var weights: FrozenWeightOptions
    @OptionGroup var dryRun: DryRunOptions

    func validate() throws {
        if dryRun.dryRun, model == nil || seqLen == nil { throw ValidationError("--dry-run plans a --model (its config.json, or a GGUF file's header, is enough) at --seq-len tokens a row") }
        if validData == nil ? evalEvery != nil : model == nil { throw ValidationError("--valid-data needs --model and --data; --eval-every needs --valid-data") }
        if let evalEvery, evalEvery < 1 { throw ValidationError("--eval-every must be at least 1, got \(evalEvery)") }
        if (model == nil) != (data == nil), !dryRun.dryRun {
            throw ValidationError("give both --model and --data, or neither (for the built-in default job)")
        }
        if model == nil, initAdapter != nil || quantize != nil || weights.dtype != nil || textData.pack {
            throw ValidationError("--init-adapter, --quantize, --dtype and --pack need --model")
        }
        if steps != nil, epochs != nil { throw ValidationError("give --steps or --epochs, not both") }
        if forceAdapter, initAdapter == nil { throw ValidationError("--force-adapter applies to --init-adapter") }
        if initAdapter != nil, peft.shapesTheAdapter { throw ValidationError("--init, --rank-pattern, --alpha-pattern, --layers, --layers-pattern and --exclude-modules shape a new adapter, not --init-adapter's") }
        guard (1...AdapterSettings.maxRank).contains(r) else { throw ValidationError("--r must be in 1...\(AdapterSettings.maxRank), got \(r)") }
        _ = try peft.initialization()
        try validateSequenceLength(seqLen)
        if textData.pack, seqLen == nil { throw ValidationError("--pack needs --seq-len, the length of the packed rows") }
        if gradAccumulationSteps < 1 { throw ValidationError("--grad-accumulation-steps must be at least 1, got \(gradAccumulationSteps)") }
        if let clip, !(clip.isFinite && clip >= 0) {
            throw ValidationError("--clip must be 0 (no clipping) or a positive number, got \(clip)")
        }
    }

    func run() throws {
        let group = try ProcessGroup.launched()
        try endingTheJobOnFailure(group) { try train(in: group) }
        try group?.finish()
    }

    private func train(in group: ProcessGroup?) throws {
        let backend = weights.apply(to: try Engine.backend(try device.request(in: group), validation: device.validationEnabled))
        let leader = (group?.rank ?? 0) == 0
        if dryRun.dryRun, let model { return try printDryRun(model, on: backend) }
        let isDefault = model == nil
        let output = adapterOut ?? (isDefault ? DefaultJob.adapterFolder : "adapter-out")

        let llama: LlamaModel, dataset: TokenDataset, source: (any ModelSource)?
        var settings = isDefault ? DefaultJob.trainingSettings : TrainingSettings()
        let adapterSettings: AdapterSettings
        if let model, let data {
            let checkpoint = try ModelSources.open(model)
            dataset = try textData.dataset(data, model: checkpoint, maxLength: seqLen, batchSize: batchSize ?? settings.batchSize, report: leader)
            try checkMemory(try memoryRun(checkpoint.config, folder: model, checkpoint: checkpoint, sequence: dataset.longestRow), on: backend)
            llama = try LlamaModel(checkpoint: checkpoint, on: backend, quantize: quantize?.dtype, dtype: weights.dtype?.dtype)
            source = checkpoint
        } else {
            source = nil
            dataset = try DefaultJob.data()
            try checkMemory(try defaultJobRun(sequence: dataset.longestRow), on: backend)
            llama = try DefaultJob.model(on: backend)
        }
        adapterSettings = try isDefault ? peft.apply(to: DefaultJob.adapterSettings) : newAdapterSettings(baseModel: llama.name ?? "")
        let adapter = try initAdapter.map { try ModelAdapter(contentsOf: $0, on: llama, force: forceAdapter) }
            ?? peft.newAdapter(adapterSettings, on: llama, seed: seed, data: dataset, batchSize: batchSize ?? settings.batchSize)
        settings.loraPlusRatio = peft.loraplusLrRatio

        if let lr { settings.learningRate = lr }
        if let warmup { settings.warmupSteps = warmup }
        if let schedule { settings.schedule = schedule }
        settings.weightDecay = weightDecay
        settings.maxGradientNorm = clip ?? settings.maxGradientNorm
        if let batchSize { settings.batchSize = batchSize }
        settings.gradientAccumulationSteps = gradAccumulationSteps
        if let steps { settings.steps = steps }
        if let epochs { settings.epochs = epochs; settings.steps = nil }
        settings.gradientCheckpointing = gradCheckpointing
        settings.residualDType = residualDType?.dtype
        settings.seed = seed
        settings.shuffle = !noShuffle
        settings.saveEvery = saveEvery
        if isDefault, warmup == nil {
            settings.warmupSteps = DefaultJob.warmupSteps(totalSteps: Trainer.totalSteps(of: settings, rows: dataset.rows.count, processes: group?.size ?? 1))
        }

        let trainer = try Trainer(model: llama, adapter: adapter, data: dataset, settings: settings, output: output, group: group)
        // Rank 0 alone prints, records and keeps checkpoints, so it alone evaluates the held-out data.
        if leader, let validData, let source {
            let held = try textData.dataset(validData, model: source, maxLength: seqLen, batchSize: settings.batchSize)
            trainer.validation = try TrainingValidation(data: held, every: evalEvery ?? trainer.totalSteps, batchSize: settings.batchSize, model: llama, adapter: adapter)
        }
        let a = adapter.settings
        if leader { printToStandardError("lowrank train: \(isDefault ? "built-in default model and corpus" : model!) on \(backend.identifier) (\(backend.deviceName)); "
            + "\(a.dora ? "DoRA" : a.rsLoRA ? "rsLoRA" : "LoRA") r=\(a.rank) alpha=\(a.alpha) on \(adapter.layers.count) modules, "
            + "\(adapter.parameters.reduce(0) { $0 + $1.tensor.shape.count }) trainable parameters; \(dataset.rows.count) rows, \(trainer.totalSteps) steps"
            + (group.map { " on \($0.size) processes" } ?? "")) }
        trainer.profiles = profile
        var progress = ProgressBar()
        if resume, let step = try trainer.resume(), leader {
            printToStandardError("resumed from \(output)/checkpoint-\(step)")
            progress.resumed(at: step)
        }
        try trainer.train { if leader { progress.update($0) } }
        guard leader else { return }
        if let profile = trainer.profile { printToStandardError(profile.table) }
        let first = trainer.losses.first ?? .nan, last = trainer.losses.last ?? .nan
        print("loss \(first) -> \(last) over \(trainer.losses.count) steps; adapter saved to \(output)/ (PEFT format), loss curve \(output)/loss.svg")
        if let best = trainer.validation?.best { print("best validation loss \(best.loss) at step \(best.step): \(output)/checkpoint-\(best.step)") }
    }
}
