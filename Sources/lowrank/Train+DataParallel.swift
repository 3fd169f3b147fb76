import LowRank
import LowRankModels

extension Train {
    /// Runs `body`; under mpirun a failure ends the whole job (MPI_Abort) after naming this rank and
    /// the error, since the other processes would otherwise wait for this one's gradients forever.
    func endingTheJobOnFailure(_ group: ProcessGroup?, _ body: () throws -> Void) throws {
        do { try body() } catch {
            guard let group, group.size > 1 else { throw error }
            printToStandardError("lowrank train: rank \(group.rank) of \(group.size) failed, ending the job: \(error)")
            group.abort()
        }
    }
}

extension DeviceOptions {
    /// `--device`, else `LOWRANK_DEVICE`, else for a process of an mpirun job the GPU at its rank
    /// among this machine's processes, counting GPUs in the order automatic choice prefers them
    /// (round robin when processes outnumber them; the CPU backend when there is none).
    func request(in group: ProcessGroup?) throws -> DeviceRequest {
        guard let group, device == nil, FileIO.environment("LOWRANK_DEVICE") == nil else { return try request }
        let gpus = Engine.devices(validation: validationEnabled).devices.compactMap(\.vulkan).filter { $0.kind != .cpu }
            .sorted { ($0.kind.preference, $0.index) < ($1.kind.preference, $1.index) }
        return gpus.isEmpty ? .automatic : .vulkan(index: gpus[group.localRank % gpus.count].index)
    }
}
