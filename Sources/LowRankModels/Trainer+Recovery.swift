import LowRank

extension Trainer {
    /// Puts `output` in order after a run was killed in it (this trainer holds its lock, so no one
    /// else is writing): each checkpoint recovered (a complete `.partial` promoted, an incomplete
    /// one removed, one set aside mid-replacement put back), checkpoint folders still incomplete
    /// (their removal was cut short) removed, and half-written `*.tmp` files removed.
    static func recoverCheckpoints(in output: String) throws {
        try FileIO.removeTemporaryFiles(in: output)
        try FileIO.removeTree(output + "/" + probeName)
        let names = try FileIO.contents(ofDirectory: output)
        // checkpoint-N, and its .partial and .partial.old.
        let steps = Set(names.compactMap { checkpointStep(String($0.prefix { $0 != "." })) })
        for step in steps.sorted() {
            let folder = output + "/checkpoint-\(step)"
            try AdapterTraining.recoverCheckpoint(folder)
            if FileIO.exists(folder), !AdapterTraining.isCheckpoint(folder) { try FileIO.removeTree(folder) }
        }
    }
}
