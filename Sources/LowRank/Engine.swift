import Synchronization

/// One device the engine can run on, the CPU backend included.
public struct DeviceDescription: Sendable, Codable {
    public var identifier: String
    public var name: String
    public var kind: String
    public var vulkan: VulkanDeviceInfo?
}

/// Device discovery and choice. Vulkan devices are preferred discrete > integrated > virtual >
/// CPU-type (lavapipe). Automatic choice passes over CPU-type devices, as llama.cpp's Vulkan backend
/// does: a software rasterizer runs these kernels about a hundred times slower than the CPU backend's
/// BLAS on the same cores. With no GPU the CPU backend runs, and says why once; `vulkan` still
/// reaches a CPU-type device.
public enum Engine {
    /// The engine's version, recorded with benchmark results.
    public static let version = "0.1.0"

    private static let announced = Mutex(false)
    private static let backends = Mutex<[String: any Backend]>([:])

    /// Validation (with synchronization validation) when `LOWRANK_VALIDATION=1`.
    public static var validationFromEnvironment: Bool { FileIO.environment("LOWRANK_VALIDATION").map { $0 == "1" || $0 == "true" } ?? false }

    /// `LOWRANK_DEVICE`, or automatic.
    public static func requestFromEnvironment() throws -> DeviceRequest {
        try FileIO.environment("LOWRANK_DEVICE").map(DeviceRequest.init(parsing:)) ?? .automatic
    }

    /// Every device the engine sees, and why Vulkan is unusable when it is.
    public static func devices(validation: Bool = validationFromEnvironment) -> (devices: [DeviceDescription], vulkanProblem: String?) {
        var list: [DeviceDescription] = []
        var problem: String?
        switch VulkanInstance.shared(validation: validation) {
        case .success(let instance):
            list = instance.devices.map { DeviceDescription(identifier: "vulkan:\($0.index)", name: $0.name, kind: $0.kind.rawValue, vulkan: $0) }
            if list.isEmpty { problem = "the Vulkan loader found no device with Vulkan 1.2" }
        case .failure(let error):
            problem = error.message
        }
        list.append(DeviceDescription(identifier: "cpu", name: CPUBackend.shared.deviceName, kind: "CPU backend", vulkan: nil))
        return (list, problem)
    }

    /// The identifier `request` resolves to, without opening anything.
    public static func resolve(_ request: DeviceRequest, validation: Bool = validationFromEnvironment) throws -> String {
        let (devices, problem) = self.devices(validation: validation)
        let preferred = devices.compactMap(\.vulkan).sorted { ($0.kind.preference, $0.index) < ($1.kind.preference, $1.index) }
        switch request {
        case .cpu:
            return "cpu"
        case .automatic:
            return preferred.first { $0.kind != .cpu }.map { "vulkan:\($0.index)" } ?? "cpu"
        case .vulkan(let index):
            let available = devices.map { "\($0.identifier) (\($0.name))" }.joined(separator: ", ")
            guard let chosen = index.map({ i in preferred.first { $0.index == i } }) ?? preferred.first else {
                throw LowRankError(.deviceUnavailable,
                                   "\(request) is not available" + (problem.map { " (\($0))" } ?? ""),
                                   context: [("available", available)])
            }
            return "vulkan:\(chosen.index)"
        }
    }

    /// The backend for `request` (default: `LOWRANK_DEVICE`), opened once per device and validation setting.
    public static func backend(_ request: DeviceRequest? = nil, validation: Bool = validationFromEnvironment) throws -> any Backend {
        let request = try request ?? requestFromEnvironment()
        let identifier = try resolve(request, validation: validation)
        if identifier == "cpu" {
            if request == .automatic { announceCPUFallback(validation: validation) }
            _ = try MatmulPrecision.fromEnvironment()  // the backend took its default for a bad value: say so
            return CPUBackend.shared
        }
        let key = "\(identifier)/\(validation)"
        return try backends.withLock { cache in
            if let b = cache[key] { return b }
            let instance = try VulkanInstance.shared(validation: validation).get()
            let b = try VulkanBackend(instance: instance, index: Int(identifier.dropFirst("vulkan:".count))!)
            cache[key] = b
            return b
        }
    }

    private static func announceCPUFallback(validation: Bool) {
        let first = announced.withLock { done in defer { done = true }; return !done }
        guard first else { return }
        let (devices, problem) = devices(validation: validation)
        let software = devices.compactMap(\.vulkan).filter { $0.kind == .cpu }.map { "vulkan:\($0.index) (\($0.name))" }
        let reason = problem ?? (software.isEmpty ? "no Vulkan device"
            : "the only Vulkan device runs on the CPU, slower than the CPU backend: "
                + software.joined(separator: ", ") + "; --device vulkan or LOWRANK_DEVICE=vulkan selects it")
        printToStandardError("lowrank: running on the CPU backend: \(reason)")
    }
}

extension CPUBackend {
    /// The process's CPU backend (OpenBLAS keeps one global thread pool anyway).
    public static let shared = CPUBackend()
}
