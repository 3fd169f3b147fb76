import CVulkan
import Glibc
import LowRankCore
import Synchronization

/// The process's Vulkan instance: the dlopen'd loader, optional validation, and the physical
/// devices it sees. One shared instance exists per validation setting, created on first use.
// Immutable after init; the handles are identifiers Vulkan allows any thread to use.
public final class VulkanInstance: @unchecked Sendable {
    public let handle: VkInstance
    public let validationEnabled: Bool
    /// Collects validation messages when validation is on (empty otherwise).
    public let validationLog: ValidationLog
    let physicalDevices: [VkPhysicalDevice]
    public let devices: [VulkanDeviceInfo]

    public static let validationLayer = "VK_LAYER_KHRONOS_validation"
    private static let instances = Mutex<[Bool: Result<VulkanInstance, LowRankError>]>([:])

    /// The shared instance, or why Vulkan cannot be used here (no loader, no driver, no layer).
    /// The loader is `LOWRANK_VULKAN_LIBRARY` when set, else `libvulkan.so.1`.
    public static func shared(validation: Bool) -> Result<VulkanInstance, LowRankError> {
        instances.withLock { cache in
            if let cached = cache[validation] { return cached }
            let result = Result { try VulkanInstance(validation: validation) }.mapError { $0 as! LowRankError }
            cache[validation] = result
            return result
        }
    }

    /// A new instance with a log of its own, for a caller that must see its own validation
    /// messages and no one else's (the test that validation catches a planted hazard). It is
    /// created under the lock that guards the shared ones.
    public static func isolated(validation: Bool) throws -> VulkanInstance {
        try instances.withLock { _ in try VulkanInstance(validation: validation) }
    }

    private init(validation: Bool) throws {
        let path = FileIO.environment("LOWRANK_VULKAN_LIBRARY")
        guard cvk_load(path) == 0 else {
            throw LowRankError(.deviceUnavailable, "cannot load the Vulkan loader: \(String(cString: cvk_last_error()))",
                               context: [("library", path ?? "libvulkan.so.1")])
        }
        if validation {
            var count: UInt32 = 0
            _ = vkEnumerateInstanceLayerProperties(&count, nil)
            var layers = [VkLayerProperties](repeating: VkLayerProperties(), count: Int(count))
            _ = vkEnumerateInstanceLayerProperties(&count, &layers)
            guard layers.contains(where: { string(fromCArray: $0.layerName) == Self.validationLayer }) else {
                throw LowRankError(.deviceUnavailable,
                                   "validation was requested but \(Self.validationLayer) is not installed (Debian: vulkan-validationlayers)")
            }
        }
        validationEnabled = validation
        let log = ValidationLog()
        validationLog = log

        var app = VkApplicationInfo()
        app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
        app.apiVersion = cvk_make_api_version(0, 1, 2, 0)
        var syncValidation = [VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT]
        var features = VkValidationFeaturesEXT()
        features.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT
        var debug = VkDebugUtilsMessengerCreateInfoEXT()
        debug.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT
        debug.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT.rawValue | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT.rawValue
        debug.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT.rawValue | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT.rawValue
            | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT.rawValue
        debug.pfnUserCallback = ValidationLog.callback
        debug.pUserData = Unmanaged.passUnretained(log).toOpaque()

        let layers = validation ? [Self.validationLayer] : []
        let extensions = validation ? ["VK_EXT_debug_utils", "VK_EXT_validation_features"] : []
        var instance: VkInstance?
        // The instance lives as long as the process, and so does its messenger.
        var messenger: VkDebugUtilsMessengerEXT?
        try withCStringArray(layers) { layerNames in
            try withCStringArray(extensions) { extensionNames in
                try withUnsafeMutablePointer(to: &debug) { debugPointer in
                    try syncValidation.withUnsafeMutableBufferPointer { enabled in
                        features.enabledValidationFeatureCount = 1
                        features.pEnabledValidationFeatures = UnsafePointer(enabled.baseAddress)
                        features.pNext = UnsafeRawPointer(debugPointer)
                        try withUnsafePointer(to: &features) { featuresPointer in
                            try withUnsafePointer(to: &app) { appPointer in
                                var info = VkInstanceCreateInfo()
                                info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                                info.pApplicationInfo = appPointer
                                info.enabledLayerCount = UInt32(layers.count)
                                info.ppEnabledLayerNames = layerNames
                                info.enabledExtensionCount = UInt32(extensions.count)
                                info.ppEnabledExtensionNames = extensionNames
                                if validation { info.pNext = UnsafeRawPointer(featuresPointer) }
                                try vkCheck(vkCreateInstance(&info, nil, &instance), "vkCreateInstance")
                            }
                        }
                    }
                }
                if validation {
                    cvk_load_instance(instance)
                    try vkCheck(vkCreateDebugUtilsMessengerEXT(instance, &debug, nil, &messenger), "vkCreateDebugUtilsMessengerEXT")
                }
            }
        }
        handle = instance!
        cvk_load_instance(handle)

        var count: UInt32 = 0
        try vkCheck(vkEnumeratePhysicalDevices(handle, &count, nil), "vkEnumeratePhysicalDevices")
        var found = [VkPhysicalDevice?](repeating: nil, count: Int(count))
        try vkCheck(vkEnumeratePhysicalDevices(handle, &count, &found), "vkEnumeratePhysicalDevices")
        // Kernels need Vulkan 1.2 (its feature structs, 16-bit storage); older devices are not offered.
        let usable = found.compactMap { $0 }.filter { device in
            var p = VkPhysicalDeviceProperties()
            vkGetPhysicalDeviceProperties(device, &p)
            return p.apiVersion >= cvk_make_api_version(0, 1, 2, 0)
        }
        physicalDevices = usable
        devices = usable.enumerated().map { VulkanDeviceInfo(index: $0.offset, physicalDevice: $0.element) }
    }
}
