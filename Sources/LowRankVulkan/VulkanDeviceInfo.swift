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
        public var cooperativeMatrix: Bool
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
        var properties = VkPhysicalDeviceProperties2()
        properties.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
        withUnsafeMutablePointer(to: &driver) { driverPointer in
            withUnsafeMutablePointer(to: &subgroup) { subgroupPointer in
                withUnsafeMutablePointer(to: &maintenance3) { m3 in
                    subgroupPointer.pointee.pNext = UnsafeMutableRawPointer(m3)
                    driverPointer.pointee.pNext = UnsafeMutableRawPointer(subgroupPointer)
                    properties.pNext = UnsafeMutableRawPointer(driverPointer)
                    vkGetPhysicalDeviceProperties2(physicalDevice, &properties)
                }
            }
        }
        let p = properties.properties
        let features = DeviceFeatureSet(physicalDevice: physicalDevice)

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
            cooperativeMatrix: features.extensions.contains("VK_KHR_cooperative_matrix") || features.extensions.contains("VK_NV_cooperative_matrix"))

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

/// The Vulkan 1.1/1.2 feature structs of a device and its extension names: read to report them,
/// and passed (pruned to what kernels use) when creating the logical device.
struct DeviceFeatureSet {
    var v11 = VkPhysicalDeviceVulkan11Features()
    var v12 = VkPhysicalDeviceVulkan12Features()
    var extensions: Set<String> = []

    init(physicalDevice: VkPhysicalDevice) {
        v11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES
        v12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        withUnsafeMutablePointer(to: &v11) { p11 in
            withUnsafeMutablePointer(to: &v12) { p12 in
                p11.pointee.pNext = UnsafeMutableRawPointer(p12)
                features.pNext = UnsafeMutableRawPointer(p11)
                vkGetPhysicalDeviceFeatures2(physicalDevice, &features)
                p11.pointee.pNext = nil
            }
        }
        var count: UInt32 = 0
        _ = vkEnumerateDeviceExtensionProperties(physicalDevice, nil, &count, nil)
        var properties = [VkExtensionProperties](repeating: VkExtensionProperties(), count: Int(count))
        _ = vkEnumerateDeviceExtensionProperties(physicalDevice, nil, &count, &properties)
        extensions = Set(properties.prefix(Int(count)).map { string(fromCArray: $0.extensionName) })
    }
}

extension String {
    /// Two lowercase hex digits.
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}
