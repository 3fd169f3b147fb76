extension Graph {
    /// The plan for `outputs` with the engine's defaults: ops a Vulkan device cannot run fall back
    /// to the CPU backend, and with `LOWRANK_CHECK=1` every step is checked against the CPU backend.
    public func compile(outputs: [GraphTensor], check: Bool = Engine.checkFromEnvironment) throws -> ExecutionPlan {
        let cpu: (any Backend)? = backend is CPUBackend ? nil : CPUBackend.shared
        return try plan(outputs: outputs, fallback: cpu, reference: check ? cpu : nil)
    }
}

extension Engine {
    /// `LOWRANK_CHECK=1`: run every graph step on the CPU backend too and stop at the first disagreement.
    public static var checkFromEnvironment: Bool { FileIO.environment("LOWRANK_CHECK").map { $0 == "1" || $0 == "true" } ?? false }
}
