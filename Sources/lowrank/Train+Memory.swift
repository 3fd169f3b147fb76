import ArgumentParser
import LowRank
import LowRankModels

extension Train {
    /// The settings of a new adapter from the command line's options.
    func newAdapterSettings(baseModel: String) throws -> AdapterSettings {
        try peft.apply(to: AdapterSettings(rank: r, alpha: alpha, dropout: dropout, rsLoRA: rslora, dora: dora,
                                           targets: AdapterSettings.targets(parsing: targets), baseModel: baseModel))
    }

    /// The run as `MemoryPlan` plans it: the model in `folder` (its weights' dtypes from the
    /// headers of `checkpoint` when it is open, else of the folder's files, or config.json's dtype
    /// without weight files) with this command's adapter, batch, quantization and checkpointing, at
    /// `sequence` tokens a row.
    func memoryRun(_ config: LlamaConfig, folder: String, checkpoint: (any ModelSource)? = nil, sequence: Int) throws -> MemoryPlan.Run {
        let adapter = try initAdapter.map { try AdapterSettings(contentsOf: $0 + "/" + ModelAdapter.configName) } ?? newAdapterSettings(baseModel: folder)
        let dtype = weights.dtype?.dtype
        let weightDType = try checkpoint?.matrixDType(dtype) ?? MemoryPlan.Run.weightDType(folder: folder, dtype: dtype)
        return MemoryPlan.Run(config: config, weightDType: weightDType,
                              quantize: quantize?.dtype, adapter: adapter, batch: batchSize ?? TrainingSettings().batchSize,
                              sequence: sequence, checkpointing: gradCheckpointing, residual: residualDType?.dtype)
    }

    /// `--dry-run`: the plan's bytes from config.json alone (a GGUF file's header: its metadata and
    /// tensor infos, no tensor data), at --seq-len tokens a row.
    func printDryRun(_ folder: String, on backend: any Backend) throws {
        let seqLen = self.seqLen ?? 2  // validate() requires it
        let gguf = ModelSources.isGGUF(folder) ? try GGUFCheckpoint(path: folder) : nil
        let config = try gguf?.config ?? LlamaConfig(contentsOf: folder + "/config.json")
        let planned = try MemoryPlan(try memoryRun(config, folder: folder, checkpoint: gguf, sequence: seqLen), on: backend)
        if dryRun.json {
            print(planned.json.serialized)
        } else {
            print("\(folder) on \(backend.identifier) (\(backend.deviceName)), \(batchSize ?? TrainingSettings().batchSize) × \(seqLen) tokens: \(planned.description)")
        }
    }

    /// The built-in default job as `MemoryPlan` plans it (f32 weights drawn from a seed).
    func defaultJobRun(sequence: Int) throws -> MemoryPlan.Run {
        MemoryPlan.Run(config: DefaultJob.config, weightDType: { _ in .f32 }, quantize: nil, adapter: try peft.apply(to: DefaultJob.adapterSettings),
                       batch: batchSize ?? DefaultJob.trainingSettings.batchSize, sequence: sequence, checkpointing: gradCheckpointing,
                       residual: residualDType?.dtype)
    }

    /// Prints the run's planned bytes and stops it before loading when they exceed the device's memory.
    func checkMemory(_ run: MemoryPlan.Run, on backend: any Backend) throws {
        let planned = try MemoryPlan.checkFits(run, on: backend)
        printToStandardError("lowrank train: \(planned.description) of \(MemoryPlan.gibibytes(MemoryPlan.capacity(of: backend))) on \(backend.identifier)")
    }
}

extension TokenDataset {
    /// The longest row: a batch's plan is largest at it.
    var longestRow: Int { rows.map(\.count).max() ?? 2 }
}
