import CMPI
import Glibc
import LowRank

/// The processes of a job launched by `mpirun`, through Open MPI's C API loaded at run time
/// (`libmpi.so.40`, or `LOWRANK_MPI_LIBRARY`), so that lowrank builds and runs where MPI is absent.
/// Calls are collective: every process of the group makes the same ones in the same order, from
/// the thread that joined.
public final class ProcessGroup: Sendable {
    public let rank: Int
    public let size: Int
    /// The rank among the processes on this machine (Open MPI's `OMPI_COMM_WORLD_LOCAL_RANK`),
    /// which chooses the device.
    public let localRank: Int

    private init(rank: Int, size: Int, localRank: Int) {
        self.rank = rank
        self.size = size
        self.localRank = localRank
    }

    /// The group this process was launched in, joined on first use (MPI initialises once per
    /// process); nil when no MPI launcher started it. Launched without a loadable libmpi, an error
    /// saying how to install it.
    public static func launched() throws -> ProcessGroup? { try launch.get() }

    private static let launch: Result<ProcessGroup?, LowRankError> = Result { () throws(LowRankError) in try join() }

    /// The variables Open MPI's `mpirun` (and PMIx launchers) set in every process they start.
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK"]

    private static func join() throws(LowRankError) -> ProcessGroup? {
        guard let variable = launcherVariables.first(where: { FileIO.environment($0) != nil }) else { return nil }
        let library = FileIO.environment("LOWRANK_MPI_LIBRARY")
        guard cmpi_load(library) == 0 else {
            throw LowRankError(.unsupported,
                               "this process was started by an MPI launcher (\(variable) is set), but Open MPI's library could not be loaded: \(String(cString: cmpi_last_error())). "
                                   + "Install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) or point LOWRANK_MPI_LIBRARY at its libmpi.so",
                               context: [("library", library ?? "libmpi.so.40")])
        }
        var rank: Int32 = 0, size: Int32 = 0
        try check(cmpi_init(&rank, &size), "MPI_Init_thread")
        let local = FileIO.environment("OMPI_COMM_WORLD_LOCAL_RANK").flatMap { Int($0) } ?? Int(rank)
        return ProcessGroup(rank: Int(rank), size: Int(size), localRank: local)
    }

    private static func check(_ status: Int32, _ call: String) throws(LowRankError) {
        guard status == 0 else { throw LowRankError(.io, "\(call) failed with MPI error \(status)") }
    }

    /// Replaces `values` on every process with their element-wise sum over the group: one
    /// all-reduce, however many tensors the buffer fuses.
    public func sum(_ values: inout [Float]) throws {
        let status = values.withUnsafeMutableBufferPointer { cmpi_allreduce_sum_float($0.baseAddress, Int64($0.count)) }
        try Self.check(status, "MPI_Allreduce of \(values.count) floats")
    }

    /// `root`'s bytes, on every process (what the others pass is ignored).
    public func broadcast(_ bytes: [UInt8], from root: Int = 0) throws -> [UInt8] {
        var count = Int64(bytes.count)
        try Self.check(cmpi_broadcast_bytes(&count, Int64(MemoryLayout<Int64>.size), Int32(root)), "MPI_Bcast of a length")
        var received = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        let status = received.withUnsafeMutableBytes { cmpi_broadcast_bytes($0.baseAddress, count, Int32(root)) }
        try Self.check(status, "MPI_Bcast of \(count) bytes")
        return received
    }

    /// Ends every process of the job (MPI_Abort), so that the others, waiting in a collective call
    /// for this one, do not hang.
    public func abort(code: Int32 = 1) -> Never {
        cmpi_abort(code)
        exit(code)
    }

    /// Leaves the group (MPI_Finalize) at the end of a run.
    public func finish() throws { try Self.check(cmpi_finalize(), "MPI_Finalize") }
}
