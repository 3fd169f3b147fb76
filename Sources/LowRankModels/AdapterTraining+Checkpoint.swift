import Glibc
import LowRank

/// A checkpoint: a folder with the adapter in PEFT's format, the optimizer's moments and
/// `trainer_state.json` (the step, every loss so far, and what the writer adds), written whole or
/// not at all, so a run stopped at any moment resumes from the last one bit for bit.
extension AdapterTraining {
    static let optimizerName = "optimizer.safetensors"
    static let stateName = "trainer_state.json"

    /// Writes the checkpoint to `folder`, replacing one there: it is built under a temporary name
    /// beside it and renamed into place. `extra` joins the step and losses in the state file.
    public func writeCheckpoint(to folder: String, extra: [String: JSON] = [:]) throws {
        guard pendingMicroBatches == 0 else {
            throw LowRankError(.invalidArgument, "the gradients of \(pendingMicroBatches) micro-batches await their optimizer step, which a checkpoint would lose: take it first",
                               context: [("folder", folder)])
        }
        let partial = folder + ".partial"
        try FileIO.removeTree(partial)
        try adapter.save(to: partial)
        try optimizer.save(to: partial + "/" + Self.optimizerName)
        var state = extra
        state["step"] = .number(Double(step))
        state["losses"] = .array(losses.map { .number(Double($0)) })
        try FileIO.writeAtomically(partial + "/" + Self.stateName, text: JSON.object(state).serialized)
        try FileIO.removeTree(folder)
        guard rename(partial, folder) == 0 else {
            throw LowRankError(.io, "cannot rename the checkpoint into place: \(String(cString: strerror(errno)))", context: [("folder", folder)])
        }
    }

    /// The state file of the checkpoint in `folder`.
    public static func checkpointState(in folder: String) throws -> JSON {
        try JSON.read(folder + "/" + stateName, what: "the trainer state")
    }

    /// Continues from the checkpoint in `folder`, whose `state` the caller has read (and checked
    /// against its run) with `checkpointState(in:)`: the adapter's tensors, the optimizer's
    /// moments, the step and the losses. The adapter must be this one's (same modules and shapes).
    public func restore(fromCheckpoint folder: String, state: JSON) throws {
        let statePath = folder + "/" + Self.stateName
        guard let saved = state["step"]?.int, let savedLosses = state["losses"]?.array?.compactMap(\.number), savedLosses.count == saved else {
            throw LowRankError(.fileFormat, "the trainer state lacks its step or losses", context: [("file", statePath)])
        }
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
