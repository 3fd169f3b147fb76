import CLowRank
import LowRank
import LowRankModels

@c public func lowrank_training_options_init(_ options: UnsafeMutablePointer<lowrank_training_options>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(options, "options")
        let d = TrainingSettings()
        out.pointee = lowrank_training_options(size: UInt32(MemoryLayout<lowrank_training_options>.size),
                                               schedule: d.schedule.code, learning_rate: d.learningRate,
                                               warmup_steps: Int64(d.warmupSteps), total_steps: 0, weight_decay: d.weightDecay,
                                               max_grad_norm: 0, gradient_checkpointing: 0, seed: d.seed, loraplus_lr_ratio: 0,
                                               residual_dtype: nil, matmul_precision: nil)
    }
}

@c public func lowrank_model_set_training(_ model: UInt64, _ options: UnsafePointer<lowrank_training_options>?) -> Int32 {
    ABI.call {
        let o = try ABI.required(options, "options").pointee
        try ABI.checkSize(o.size, of: lowrank_training_options.self, "lowrank_training_options", initializer: "lowrank_training_options_init")
        var settings = TrainingSettings()
        guard let schedule = LearningRateSchedule.Kind(code: o.schedule) else {
            let codes = LearningRateSchedule.Kind.allCases.map { "\($0.code) \($0.rawValue)" }.joined(separator: ", ")
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "schedule \(o.schedule) is not a lowrank_schedule (\(codes))")
        }
        settings.schedule = schedule
        guard o.learning_rate.isFinite, o.learning_rate >= 0, o.weight_decay.isFinite, o.weight_decay >= 0 else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "the learning rate and weight decay must be finite and not negative, got \(o.learning_rate) and \(o.weight_decay)")
        }
        guard o.warmup_steps >= 0, o.total_steps >= 0, o.max_grad_norm.isFinite, o.max_grad_norm >= 0 else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "warmup_steps, total_steps and max_grad_norm must not be negative")
        }
        settings.learningRate = o.learning_rate
        settings.warmupSteps = Int(o.warmup_steps)
        settings.weightDecay = o.weight_decay
        settings.maxGradientNorm = o.max_grad_norm > 0 ? o.max_grad_norm : nil
        settings.gradientCheckpointing = o.gradient_checkpointing != 0
        if let pointer = o.residual_dtype, case let name = try ABI.string(pointer, "residual_dtype"), !name.isEmpty {
            guard let dtype = DType(rawValue: name), [.f32, .bf16, .f16].contains(dtype) else {
                throw ABIError(LOWRANK_INVALID_ARGUMENT, "residual_dtype takes f32, bf16 or f16, not \(name)")
            }
            settings.residualDType = dtype
        }
        let precision = try o.matmul_precision.map { try MatmulPrecision.named(try ABI.string($0, "matmul_precision"), "matmul_precision") }
        settings.seed = o.seed
        guard o.loraplus_lr_ratio.isFinite, o.loraplus_lr_ratio >= 0 else {
            throw ABIError(LOWRANK_INVALID_ARGUMENT, "loraplus_lr_ratio must be finite and not negative (0: off), got \(o.loraplus_lr_ratio)")
        }
        settings.loraPlusRatio = o.loraplus_lr_ratio > 0 ? o.loraplus_lr_ratio : nil
        let totalSteps = o.total_steps > 0 ? Int(o.total_steps) : nil
        _ = try settings.optimizer(totalSteps: totalSteps)   // a linear or cosine schedule without a length fails here, not at the first step
        try HandleTable.model(model).withState { state in
            if let precision { Engine.setMatmulPrecision(precision, on: state.model.backend) }
            state.settings = settings
            state.totalSteps = totalSteps
            state.training = nil
        }
    }
}

@c public func lowrank_model_step(_ model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                                  _ rows: Int64, _ sequence: Int64, _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.loss(of: model, inputIDs, labels, rows, sequence, into: loss) { state, batch in
        try state.currentTraining().step(on: batch)
    }
}

@c public func lowrank_model_step_packed(_ model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                                         _ positionIDs: UnsafePointer<Int32>?, _ rows: Int64, _ sequence: Int64,
                                         _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.loss(of: model, inputIDs, labels, packedBy: positionIDs, rows, sequence, into: loss) { state, batch in
        try state.currentTraining().step(on: batch)
    }
}

@c public func lowrank_model_forward_backward(_ model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                                              _ rows: Int64, _ sequence: Int64, _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.loss(of: model, inputIDs, labels, rows, sequence, into: loss) { state, batch in
        try state.currentTraining().accumulate(batch)
    }
}

@c public func lowrank_model_forward_backward_packed(_ model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                                                     _ positionIDs: UnsafePointer<Int32>?, _ rows: Int64, _ sequence: Int64,
                                                     _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.loss(of: model, inputIDs, labels, packedBy: positionIDs, rows, sequence, into: loss) { state, batch in
        try state.currentTraining().accumulate(batch)
    }
}

@c public func lowrank_model_optimizer_step(_ model: UInt64, _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(loss, "loss")
        out.pointee = try HandleTable.model(model).withState { state in
            let training = try state.currentTraining()
            guard training.hasPendingGradients else {
                throw ABIError(LOWRANK_STATE, "no gradients to apply: call lowrank_model_forward_backward (or lowrank_model_set_gradients) since the last optimizer step")
            }
            return try training.applyAccumulated()
        }
    }
}

@c public func lowrank_model_save_checkpoint(_ model: UInt64, _ folder: UnsafePointer<CChar>?) -> Int32 {
    ABI.withFolder(folder, of: model) { state, path in
        let training = try state.currentTraining()
        try OutputLock.holding(path) { try training.writeCheckpoint(to: path) }
    }
}

@c public func lowrank_model_load_checkpoint(_ model: UInt64, _ folder: UnsafePointer<CChar>?) -> Int32 {
    ABI.withFolder(folder, of: model) { state, path in
        // A writer killed mid-checkpoint may have left it under its temporary name.
        try OutputLock.holding(path) { try AdapterTraining.recoverCheckpoint(path) }
        let progress = try AdapterTraining.checkpointState(in: path)
        let adapter = try ModelAdapter(contentsOf: path, on: state.model)
        let training = try state.newTraining(of: adapter)
        try training.restore(fromCheckpoint: path, state: progress)
        state.attach(adapter)
        state.training = training
    }
}

@c public func lowrank_model_step_count(_ model: UInt64, _ steps: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(steps, "steps")
        out.pointee = Int64(try HandleTable.model(model).withState { $0.training?.step ?? 0 })
    }
}

@c public func lowrank_model_loss(_ model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                                  _ rows: Int64, _ sequence: Int64, _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.loss(of: model, inputIDs, labels, rows, sequence, into: loss) { state, batch in
        if state.evaluator == nil { state.evaluator = LossEvaluator(model: state.model, adapter: state.adapter) }
        return try state.evaluator!.loss(of: batch)
    }
}

@c public func lowrank_model_loss_packed(_ model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                                         _ positionIDs: UnsafePointer<Int32>?, _ rows: Int64, _ sequence: Int64,
                                         _ loss: UnsafeMutablePointer<Float>?) -> Int32 {
    ABI.loss(of: model, inputIDs, labels, packedBy: positionIDs, rows, sequence, into: loss) { state, batch in
        if state.evaluator == nil { state.evaluator = LossEvaluator(model: state.model, adapter: state.adapter) }
        return try state.evaluator!.loss(of: batch)
    }
}

extension ABI {
    /// What step and loss share: the batch built from the caller's buffers under the model's
    /// lock, handed to `body`, and the loss it returns stored.
    /// `packedBy`: the `_packed` functions' position ids (required there, NULL or not).
    static func loss(of model: UInt64, _ inputIDs: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?,
                     packedBy positionIDs: UnsafePointer<Int32>?? = nil, _ rows: Int64, _ sequence: Int64,
                     into loss: UnsafeMutablePointer<Float>?, _ body: (inout ModelSession.State, TokenBatch) throws -> Float) -> Int32 {
        call {
            let out = try required(loss, "loss")
            out.pointee = try HandleTable.model(model).withState { state in
                try body(&state, try batch(inputIDs, labels, packedBy: positionIDs, rows, sequence, vocabularySize: state.model.config.vocabularySize))
            }
        }
    }

    /// The caller's `rows × sequence` ids (and labels, and position ids when packed) as a batch,
    /// the counts checked before any memory is read.
    static func batch(_ ids: UnsafePointer<Int32>?, _ labels: UnsafePointer<Int32>?, packedBy positionIDs: UnsafePointer<Int32>?? = nil,
                      _ rows: Int64, _ sequence: Int64, vocabularySize: Int) throws -> TokenBatch {
        guard rows >= 1, sequence >= 2 else {
            throw ABIError(LOWRANK_SHAPE_MISMATCH, "a batch needs at least one row of at least 2 tokens, got \(rows) × \(sequence)")
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: sequence)
        guard !overflow, count <= Int64(Int32.max) else {
            throw ABIError(LOWRANK_SHAPE_MISMATCH, "a batch of \(rows) × \(sequence) tokens is too large")
        }
        return try TokenBatch(inputIDs: try elements(ids, Int(count), "input_ids"), labels: try labels.map { try elements($0, Int(count), "labels") },
                              positionIDs: try positionIDs.map { try elements($0, Int(count), "position_ids") },
                              rows: Int(rows), sequence: Int(sequence), vocabularySize: vocabularySize)
    }
}

extension LearningRateSchedule.Kind {
    /// The `lowrank_schedule` value: the case's position (`CABITests` checks lowrank.h against it).
    var code: Int32 { Int32(Self.allCases.firstIndex(of: self)!) }

    init?(code: Int32) {
        guard Self.allCases.indices.contains(Int(code)) else { return nil }
        self = Self.allCases[Int(code)]
    }
}
