import LowRank

extension Trainer {
    /// The backends a step runs on: the model's, and the CPU where the model's plans fall back to it.
    var stepBackends: [any Backend] {
        let backend = training.model.backend
        return backend is CPUBackend ? [backend] : [backend, CPUBackend.shared]
    }

    /// Runs `body` (the training loop) with every step backend profiling, and keeps the profile of
    /// its steps in `profile`; backends that ran nothing are left out of it.
    func profilingSteps(_ body: () throws -> Void) throws {
        let backends = stepBackends, first = step
        for backend in backends { try backend.startProfiling() }
        do {
            try body()
        } catch {
            for backend in backends { _ = try? backend.stopProfiling() }
            throw error
        }
        let profiles = try backends.map { try $0.stopProfiling() }.filter { !$0.ops.isEmpty }
        profile = StepProfile(steps: step - first, backends: profiles)
    }

    /// What checkpoints record of the profile, once there is one.
    var profileRecord: [String: JSON] { profile.map { ["profile": $0.json] } ?? [:] }
}
