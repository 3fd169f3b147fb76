import CVulkan
import LowRankCore

/// What the engine knows about one physical device: identity, the limits kernels size themselves
/// by, and the features they use.
public struct VulkanDeviceInfo: Sendable, Codable {
    public enum Kind: String, Sendable, Codable {
        case discrete = "discrete GPU", integrated = "integrated GPU", virtual = "virtual GPU", cpu = "CPU", other
        /// Lower is preferred when choosing a device.
        public var preference: Int {
            switch self {
            case .discrete: 0
            case .integrated: 1
            case .virtual: 2
            case .cpu: 3
            case .other: 4
            }
        }
    }

    public struct Limits: Sendable, Codable {
        public var maxComputeSharedMemoryBytes: Int
        public var subgroupSize: Int
        /// The smallest subgroup size a pipeline may ask for (`VK_EXT_subgroup_size_control`; 0 without
        /// it). Intel's Xe2 is the architecture whose minimum is 16, as ggml-vulkan tells it apart.
        public var minSubgroupSize: Int
        public var maxWorkgroupInvocations: Int
        public var maxWorkgroupCount: [Int]
        public var maxStorageBufferRange: Int
        public var maxMemoryAllocationSize: Int
        public var maxPushConstantsSize: Int
        public var minStorageBufferOffsetAlignment: Int
        public var timestampPeriodNanoseconds: Double
    }

    public struct Features: Sendable, Codable {
        public var shaderFloat16: Bool
        public var storageBuffer16Bit: Bool
        public var storageBuffer8Bit: Bool
        public var shaderInt8: Bool
        public var subgroupArithmetic: Bool
        /// Subgroup quad operations in compute shaders (`VK_SUBGROUP_FEATURE_QUAD_BIT`).
        public var subgroupQuad: Bool
        /// `VK_KHR_cooperative_matrix` with its feature on; `cooperativeMatrixShapes` lists what it multiplies.
        public var cooperativeMatrix: Bool
        /// The Vulkan memory model, which the cooperative-matrix kernels' SPIR-V declares.
        public var vulkanMemoryModel: Bool
        /// `VK_EXT_subgroup_size_control`'s `computeFullSubgroups`: cooperative matrices in SPIR-V
        /// before 1.6 need pipelines whose subgroups are all full.
        public var fullSubgroups: Bool
    }

    /// One cooperative-matrix multiply the device offers (`vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR`):
    /// an M×K A times a K×N B plus an M×N C, with each operand's component type.
    public struct CooperativeMatrixShape: Sendable, Codable, Hashable, CustomStringConvertible {
        public var m: Int, n: Int, k: Int
        /// Component types as Vulkan names them, shortened: `f16`, `f32`, `s8`, `u32`, …
        public var a: String, b: String, c: String, result: String
        public var saturating: Bool
        /// `subgroup`, `workgroup`, `device` or `queue family`.
        public var scope: String

        /// `16×16×16 f16×f16→f32` (`+f16` when the accumulator C's type differs from the result's).
        public var description: String {
            "\(m)×\(n)×\(k) \(a)×\(b)→\(result)" + (c == result ? "" : " (+\(c))") + (saturating ? " saturating" : "")
                + (scope == "subgroup" ? "" : " \(scope) scope")
        }
    }

    public var index: Int
    public var name: String
    public var kind: Kind
    public var driverName: String
    public var driverInfo: String
    public var apiVersion: String
    public var vendorID: UInt32
    public var deviceID: UInt32
    public var driverVersion: UInt32
    public var pipelineCacheUUID: String
    public var limits: Limits
    public var features: Features
    /// Empty without `VK_KHR_cooperative_matrix`.
    public var cooperativeMatrixShapes: [CooperativeMatrixShape]
    /// Total bytes of the device-local heaps.
    public var deviceLocalBytes: Int
}

extension VulkanDeviceInfo {
    init(index: Int, physicalDevice: VkPhysicalDevice) {
        var driver = VkPhysicalDeviceDriverProperties()
        driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES
        var subgroup = VkPhysicalDeviceSubgroupProperties()
        subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES
        var maintenance3 = VkPhysicalDeviceMaintenance3Properties()
        maintenance3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES
        var subgroupSizes = VkPhysicalDeviceSubgroupSizeControlProperties()
        subgroupSizes.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES
        var properties = VkPhysicalDeviceProperties2()
        properties.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        let features = DeviceFeatureSet(physicalDevice: physicalDevice)
        withUnsafeMutablePointer(to: &driver) { driverPointer in
            withUnsafeMutablePointer(to: &subgroup) { subgroupPointer in
                withUnsafeMutablePointer(to: &maintenance3) { m3 in
                    withUnsafeMutablePointer(to: &subgroupSizes) { sizes in
                        if features.extensions.contains(DeviceFeatureSet.subgroupSizeControlExtension) {
                            m3.pointee.pNext = UnsafeMutableRawPointer(sizes)
                        }
                        subgroupPointer.pointee.pNext = UnsafeMutableRawPointer(m3)
                        driverPointer.pointee.pNext = UnsafeMutableRawPointer(subgroupPointer)
                        properties.pNext = UnsafeMutableRawPointer(driverPointer)
                        vkGetPhysicalDeviceProperties2(physicalDevice, &properties)
                        m3.pointee.pNext = nil
                    }
                }
            }
        }
        let p = properties.properties

        self.index = index
        name = string(fromCArray: p.deviceName)
        kind = switch p.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: .discrete
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: .integrated
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: .virtual
        case VK_PHYSICAL_DEVICE_TYPE_CPU: .cpu
        default: .other
        }
        driverName = string(fromCArray: driver.driverName)
        driverInfo = string(fromCArray: driver.driverInfo)
        apiVersion = "\(cvk_api_version_major(p.apiVersion)).\(cvk_api_version_minor(p.apiVersion)).\(cvk_api_version_patch(p.apiVersion))"
        vendorID = p.vendorID
        deviceID = p.deviceID
        driverVersion = p.driverVersion
        pipelineCacheUUID = withUnsafeBytes(of: p.pipelineCacheUUID) { $0.map { String(format2: $0) }.joined() }
        let l = p.limits
        limits = Limits(
            maxComputeSharedMemoryBytes: Int(l.maxComputeSharedMemorySize),
            subgroupSize: Int(subgroup.subgroupSize),
            minSubgroupSize: Int(subgroupSizes.minSubgroupSize),
            maxWorkgroupInvocations: Int(l.maxComputeWorkGroupInvocations),
            maxWorkgroupCount: [Int(l.maxComputeWorkGroupCount.0), Int(l.maxComputeWorkGroupCount.1), Int(l.maxComputeWorkGroupCount.2)],
            maxStorageBufferRange: Int(l.maxStorageBufferRange),
            maxMemoryAllocationSize: Int(maintenance3.maxMemoryAllocationSize),
            maxPushConstantsSize: Int(l.maxPushConstantsSize),
            minStorageBufferOffsetAlignment: Int(l.minStorageBufferOffsetAlignment),
            timestampPeriodNanoseconds: Double(l.timestampPeriod))
        self.features = Features(
            shaderFloat16: features.v12.shaderFloat16 != 0,
            storageBuffer16Bit: features.v11.storageBuffer16BitAccess != 0,
            storageBuffer8Bit: features.v12.storageBuffer8BitAccess != 0,
            shaderInt8: features.v12.shaderInt8 != 0,
            subgroupArithmetic: subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT.rawValue != 0,
            subgroupQuad: subgroup.supportedOperations & VK_SUBGROUP_FEATURE_QUAD_BIT.rawValue != 0
                && subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT.rawValue != 0,
            cooperativeMatrix: features.cooperativeMatrix.cooperativeMatrix != 0,
            vulkanMemoryModel: features.v12.vulkanMemoryModel != 0,
            fullSubgroups: features.subgroupSizeControl.computeFullSubgroups != 0)
        cooperativeMatrixShapes = self.features.cooperativeMatrix ? Self.cooperativeMatrixShapes(physicalDevice) : []

        var memory = VkPhysicalDeviceMemoryProperties()
        vkGetPhysicalDeviceMemoryProperties(physicalDevice, &memory)
        deviceLocalBytes = withUnsafeBytes(of: memory.memoryHeaps) { raw in
            let heaps = raw.bindMemory(to: VkMemoryHeap.self)
            return heaps.prefix(Int(memory.memoryHeapCount))
                .filter { $0.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0 }
                .reduce(0) { $0 + Int($1.size) }
        }
    }
}

extension VulkanDeviceInfo {
    /// Whether subgroup quad permutes cost next to nothing here: on AMD, with quad operations in compute
    /// and subgroups of at least four, where RADV's and AMD's compilers fold them into the instruction that
    /// reads the value (DPP: `v_fmac_f32_dpp`). Picked per vendor as ggml-vulkan picks its kernels; NVIDIA
    /// lowers a permute to SHFL, one more instruction per FMA. The shared tile needs full subgroups
    /// (`computeFullSubgroups`).
    var hasCheapQuadPermutes: Bool { vendorID == 0x1002 && features.subgroupQuad && features.fullSubgroups && limits.subgroupSize >= 4 }

    private static func cooperativeMatrixShapes(_ physicalDevice: VkPhysicalDevice) -> [CooperativeMatrixShape] {
        guard let query = vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR else { return [] }
        var count: UInt32 = 0
        guard query(physicalDevice, &count, nil) == VK_SUCCESS, count > 0 else { return [] }
        var blank = VkCooperativeMatrixPropertiesKHR()
        blank.sType = cvk_structure_type_cooperative_matrix_properties
        var properties = [VkCooperativeMatrixPropertiesKHR](repeating: blank, count: Int(count))
        guard query(physicalDevice, &count, &properties) == VK_SUCCESS else { return [] }
        return properties.prefix(Int(count)).map { p in
            CooperativeMatrixShape(m: Int(p.MSize), n: Int(p.NSize), k: Int(p.KSize), a: componentName(p.AType.rawValue),
                                   b: componentName(p.BType.rawValue), c: componentName(p.CType.rawValue),
                                   result: componentName(p.ResultType.rawValue), saturating: p.saturatingAccumulation != 0,
                                   scope: scopeName(p.scope.rawValue))
        }
    }

    /// `VkComponentTypeKHR` by value (the NV and KHR enums share them; older headers lack the KHR names).
    private static func componentName(_ value: UInt32) -> String {
        let names = ["f16", "f32", "f64", "s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64"]
        return Int(value) < names.count ? names[Int(value)] : value == 1_000_141_000 ? "bf16" : "type \(value)"
    }

    private static func scopeName(_ value: UInt32) -> String {
        switch value {
        case 1: "device"
        case 2: "workgroup"
        case 3: "subgroup"
        case 5: "queue family"
        default: "scope \(value)"
        }
    }
}

/// The Vulkan 1.1/1.2 feature structs of a device and its extension names: read to report them,
/// and passed (pruned to what kernels use) when creating the logical device.
struct DeviceFeatureSet {
    var v11 = VkPhysicalDeviceVulkan11Features()
    var v12 = VkPhysicalDeviceVulkan12Features()
    /// Zero unless the device has `VK_KHR_cooperative_matrix`.
    var cooperativeMatrix = VkPhysicalDeviceCooperativeMatrixFeaturesKHR()
    /// Zero unless the device has `VK_EXT_subgroup_size_control`.
    var subgroupSizeControl = VkPhysicalDeviceSubgroupSizeControlFeatures()
    static let subgroupSizeControlExtension = "VK_EXT_subgroup_size_control"
    var extensions: Set<String> = []

    init(physicalDevice: VkPhysicalDevice) {
        var count: UInt32 = 0
        _ = vkEnumerateDeviceExtensionProperties(physicalDevice, nil, &count, nil)
        var properties = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(count))
        _ = vkEnumerateDeviceExtensionProperties(physicalDevice, nil, &count, &properties)
        extensions = Set(properties.prefix(Int(count)).map { string(fromCArray: $0.extensionName) })

        v11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES
        v12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES
        cooperativeMatrix.sType = cvk_structure_type_cooperative_matrix_features
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        // An extension's struct may be chained only when the device has that extension.
        subgroupSizeControl.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES
        let chainsCooperativeMatrix = extensions.contains(VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME)
        let chainsSubgroupSizeControl = extensions.contains(Self.subgroupSizeControlExtension)
        withUnsafeMutablePointer(to: &v11) { p11 in
            withUnsafeMutablePointer(to: &v12) { p12 in
                withUnsafeMutablePointer(to: &cooperativeMatrix) { pcm in
                    withUnsafeMutablePointer(to: &subgroupSizeControl) { pss in
                        p11.pointee.pNext = UnsafeMutableRawPointer(p12)
                        var last = UnsafeMutableRawPointer(p12).assumingMemoryBound(to: VkBaseOutStructure.self)
                        for (chained, next) in [(chainsCooperativeMatrix, UnsafeMutableRawPointer(pcm)), (chainsSubgroupSizeControl, UnsafeMutableRawPointer(pss))]
                        where chained {
                            last.pointee.pNext = next.assumingMemoryBound(to: VkBaseOutStructure.self)
                            last = next.assumingMemoryBound(to: VkBaseOutStructure.self)
                        }
                        features.pNext = UnsafeMutableRawPointer(p11)
                        vkGetPhysicalDeviceFeatures2(physicalDevice, &features)
                        p11.pointee.pNext = nil
                        p12.pointee.pNext = nil
                        pcm.pointee.pNext = nil
                    }
                }
            }
        }
    }
}

extension String {
    /// Two lowercase hex digits.
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}
