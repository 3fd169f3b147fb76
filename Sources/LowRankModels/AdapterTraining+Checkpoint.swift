import Glibc
import LowRank

/// A checkpoint: a folder with the adapter in PEFT's format, the optimizer's moments and
/// `trainer_state.json` (the step, every loss so far, the settings the steps were taken with, and
/// what the writer adds). It is written whole under `<folder>.partial` and becomes visible by one
/// rename, so a run stopped at any moment resumes from the last one bit for bit.
extension AdapterTraining {
    static let optimizerName = "optimizer.safetensors"
    static let stateName = "trainer_state.json"

    /// Where a checkpoint is built before it is renamed into place.
    public static func partialName(_ folder: String) -> String { folder + ".partial" }

    /// Writes the checkpoint to `folder`, replacing one there: it is built under
    /// `partialName(folder)` and renamed into place, after the leftovers of a writer killed before
    /// are recovered. `extra` joins the step, losses and settings in the state file. An adapter
    /// tensor holding a NaN or infinity is an error naming it, and nothing is written.
    public func writeCheckpoint(to folder: String, extra: [String: JSON] = [:]) throws {
        guard !hasPendingGradients else {
            throw LowRankError(.invalidArgument, "the gradients of \(pendingMicroBatches) micro-batches (or set from outside) await their optimizer step, which a checkpoint would lose: take it first",
                               context: [("folder", folder)])
        }
        try adapter.checkFinite(what: "a checkpoint of it")
        try Self.recoverCheckpoint(folder)
        if FileIO.exists(folder), !Self.isCheckpoint(folder), !((try? FileIO.contents(ofDirectory: folder))?.isEmpty ?? false) {
            throw LowRankError(.invalidArgument, "the folder exists and is not a checkpoint; a checkpoint replaces its folder whole, so choose another",
                               context: [("folder", folder)])
        }
        let partial = Self.partialName(folder)
        try adapter.save(to: partial)
        try optimizer.save(to: partial + "/" + Self.optimizerName)
        var state = extra
        for (key, value) in settingsRecord { state[key] = value }
        state["step"] = .number(Double(step))
        state["losses"] = .array(losses.map { .number(Double($0)) })
        // Last, so that a folder with a state file holds everything else too.
        try FileIO.writeAtomically(partial + "/" + Self.stateName, text: JSON.object(state).serialized)
        try FileIO.replaceFolder(folder, with: partial)
    }

    /// The files of a checkpoint, the state file last.
    static let checkpointFiles = [ModelAdapter.weightsName, ModelAdapter.configName, optimizerName, stateName]

    /// Whether `folder` holds every file of a checkpoint.
    static func isCheckpoint(_ folder: String) -> Bool {
        checkpointFiles.allSatisfy { FileIO.exists(folder + "/" + $0) }
    }

    /// Puts the checkpoint at `folder` in order after its writer was killed: a complete
    /// `.partial` takes the place of an incomplete or missing one, an incomplete `.partial` is
    /// removed, the old one set aside mid-replacement comes back when nothing took its place, and
    /// half-written files are removed. Only for a folder no one else is writing.
    public static func recoverCheckpoint(_ folder: String) throws {
        let partial = partialName(folder)
        if isCheckpoint(partial) && !isCheckpoint(folder) {
            try FileIO.removeTree(folder)
            try FileIO.replaceFolder(folder, with: partial)
        }
        try FileIO.removeTree(partial)
        try FileIO.restoreAside(of: folder, staged: partial)
        if FileIO.isDirectory(folder) { try FileIO.removeTemporaryFiles(in: folder) }
    }

    /// The settings the steps depend on, as a checkpoint records them: resuming with others would
    /// not continue the same run.
    var settingsRecord: [(key: String, value: JSON)] {
        // LoRA+'s ratio only when set, so checkpoints of runs without it still resume.
        settings.loraPlusRatio.map { [("loraplus_lr_ratio", JSON.number($0))] } ?? []
        + [("learning_rate", .number(settings.learningRate)), ("schedule", .string(settings.schedule.rawValue)),
         ("warmup_steps", .number(Double(settings.warmupSteps))), ("total_steps", totalSteps.map { .number(Double($0)) } ?? .null),
         ("weight_decay", .number(settings.weightDecay)), ("max_grad_norm", settings.maxGradientNorm.map { .number(Double($0)) } ?? .null),
         ("seed", .string(String(settings.seed)))]
    }

    /// Refuses to continue from the checkpoint whose state is `state` when it recorded another
    /// value of one of `current`'s settings, naming the first that differs.
    static func refuseMismatch(_ state: JSON, _ current: [(key: String, value: JSON)], folder: String) throws {
        for (key, value) in current where state[key] != value {
            let recorded = state[key].map { "\($0.serialized)" } ?? "nothing (a checkpoint of an older lowrank)"
            throw LowRankError(.invalidArgument,
                               "the checkpoint was made with \(key) \(recorded), this run has \(value.serialized): resuming would not continue the same run (start afresh, or give the settings it was made with)",
                               context: [("folder", folder), ("setting", key)])
        }
    }

    /// The state file of the checkpoint in `folder`.
    public static func checkpointState(in folder: String) throws -> JSON {
        try JSON.read(folder + "/" + stateName, what: "the trainer state")
    }

    /// Continues from the checkpoint in `folder`, whose `state` the caller has read (and checked
    /// against its run) with `checkpointState(in:)`: the adapter's tensors, the optimizer's
    /// moments, the step and the losses. The adapter must be this one's (same modules and shapes),
    /// and the checkpoint's settings this training's.
    public func restore(fromCheckpoint folder: String, state: JSON) throws {
        let statePath = folder + "/" + Self.stateName
        guard let saved = state["step"]?.int, let savedLosses = state["losses"]?.array?.compactMap(\.number), savedLosses.count == saved else {
            throw LowRankError(.fileFormat, "the trainer state lacks its step or losses", context: [("file", statePath)])
        }
        try Self.refuseMismatch(state, settingsRecord, folder: folder)
        try adapter.restore(from: folder)
        let optimizerPath = folder + "/" + Self.optimizerName
        try optimizer.load(from: optimizerPath)
        guard optimizer.step == saved else {
            throw LowRankError(.fileFormat, "the optimizer state is at step \(optimizer.step), the trainer's at \(saved)", context: [("file", optimizerPath)])
        }
        step = saved
        losses = savedLosses.map { Float($0) }
    }
}
