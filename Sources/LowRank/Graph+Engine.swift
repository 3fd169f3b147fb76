extension Graph {
    /// The plan for `outputs` with the engine's defaults: ops a Vulkan device cannot run fall back
    /// to the CPU backend, with `LOWRANK_CHECK=1` every step is checked against the CPU backend, and
    /// with `LOWRANK_CHECK=f64` every step is measured against float64 and the worst error of each
    /// op printed after each run. `inPlace` as for `plan(outputs:)`.
    public func compile(outputs: [GraphTensor], check: Bool = Engine.checkFromEnvironment, inPlace: Bool = true) throws -> ExecutionPlan {
        let cpu: (any Backend)? = backend is CPUBackend ? nil : CPUBackend.shared
        return try plan(outputs: outputs, fallback: cpu, reference: check ? cpu : nil,
                        observer: Engine.float64CheckFromEnvironment ? Float64Check(printing: true) : nil, inPlace: inPlace)
    }
}

extension Engine {
    /// `LOWRANK_CHECK=1`: run every graph step on the CPU backend too and stop at the first disagreement.
    public static var checkFromEnvironment: Bool { FileIO.environment("LOWRANK_CHECK").map { $0 == "1" || $0 == "true" } ?? false }
    /// `LOWRANK_CHECK=f64`: measure every graph step against its float64 twin (`Float64Check`).
    public static var float64CheckFromEnvironment: Bool { FileIO.environment("LOWRANK_CHECK") == "f64" }
}
