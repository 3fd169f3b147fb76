extension Engine {
    /// How `backend` computes products (`CPUBackend.matmulPrecision`, `VulkanBackend.matmulPrecision`),
    /// nil for a backend that computes nothing (`PlanningBackend`).
    public static func matmulPrecision(of backend: any Backend) -> MatmulPrecision? {
        switch backend {
        case let cpu as CPUBackend: cpu.matmulPrecision
        case let vulkan as VulkanBackend: vulkan.matmulPrecision
        default: nil
        }
    }

    /// Sets how `backend` computes products from now on, for every model on it (`--precision`,
    /// `lowrank_training_options.matmul_precision`); a backend that computes nothing ignores it.
    public static func setMatmulPrecision(_ precision: MatmulPrecision, on backend: any Backend) {
        switch backend {
        case let cpu as CPUBackend: cpu.matmulPrecision = precision
        case let vulkan as VulkanBackend: vulkan.matmulPrecision = precision
        default: break
        }
    }
}
