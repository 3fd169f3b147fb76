import Glibc
import LowRank

/// Micro-batches and processes: a step's rows are `gradientAccumulationSteps` micro-batches of
/// `batchSize × processes` consecutive rows, and each process takes its contiguous share of every
/// micro-batch (rank r rows `r·batchSize ..< (r+1)·batchSize` of it). Every process's gradients,
/// weighted by predicted tokens, are summed over micro-batches and then over processes, so N
/// processes with batch size B step as one process with batch size N·B: the same rows, in the
/// same order, the same mean over their tokens. Only dropout draws differ (each micro-batch of each
/// process draws its own masks from the step's seed).
extension Trainer {
    /// One optimizer step on `rows`, the whole step's rows over every process.
    func accumulatedStep(_ rows: ArraySlice<Int>) throws -> Float {
        let processes = group?.size ?? 1, rank = group?.rank ?? 0
        let microBatchRows = settings.batchSize * processes
        for microBatch in 0..<settings.gradientAccumulationSteps {
            let start = rows.startIndex + microBatch * microBatchRows + rank * settings.batchSize
            let share = rows[min(start, rows.endIndex)..<min(start + settings.batchSize, rows.endIndex)]
            // A share past the end of a short last batch, or of one-token rows, adds nothing, as
            // those rows add nothing to one process's batch.
            guard share.contains(where: { data.rows[$0].count > 1 }) else { continue }
            try training.queueMicroBatch(data.batch(share), dropoutDraw: microBatch * processes + rank)
        }
        return try training.applyAccumulated(across: group)
    }

    /// `resume()` for a group: rank 0 finds the newest checkpoint in its output and checks it
    /// against this run, then sends its files to the others (whose machines need not see the
    /// folder), and every process restores from them. Returns the step resumed at, or nil.
    func resume(from group: ProcessGroup) throws -> Int? {
        let root = group.rank == 0
        var latest: String?
        if root, let output, let found = Self.checkpoints(in: output).first {
            try AdapterTraining.refuseMismatch(try AdapterTraining.checkpointState(in: found.path), runRecord, folder: found.path)
            latest = found.path
        }
        guard try !group.broadcast(latest == nil ? [] : [1]).isEmpty else { return nil }
        let folder = try latest ?? Self.makeTemporaryFolder()
        defer { if !root { try? FileIO.removeTree(folder) } }
        for name in AdapterTraining.checkpointFiles {
            let bytes = try group.broadcast(root ? FileIO.read(folder + "/" + name) : [])
            if !root { try bytes.withUnsafeBytes { try FileIO.writeAtomically(folder + "/" + name, $0) } }
        }
        return try restore(fromCheckpoint: folder, state: try AdapterTraining.checkpointState(in: folder))
    }

    /// A new folder under `TMPDIR` (or /tmp) for a checkpoint received from rank 0.
    static func makeTemporaryFolder() throws -> String {
        let pattern = (FileIO.environment("TMPDIR") ?? "/tmp") + "/lowrank-checkpoint-XXXXXX"
        var template = Array(pattern.utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw LowRankError(.io, "cannot make a temporary folder (errno \(errno))", context: [("folder", pattern)])
        }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
