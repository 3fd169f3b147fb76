extension Engine {
    /// How `backend` computes products (`MatmulPrecisionSetting`), nil for a backend that computes
    /// nothing (`PlanningBackend`).
    public static func matmulPrecision(of backend: any Backend) -> MatmulPrecision? {
        (backend as? any MatmulPrecisionSetting)?.matmulPrecision
    }

    /// Sets how `backend` computes products from now on, for every model on it (`--precision`,
    /// `lowrank_training_options.matmul_precision`); a backend that computes nothing ignores it.
    public static func setMatmulPrecision(_ precision: MatmulPrecision, on backend: any Backend) {
        (backend as? any MatmulPrecisionSetting)?.matmulPrecision = precision
    }
}
