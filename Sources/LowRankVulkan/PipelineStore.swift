import CVulkan
import Glibc
import LowRankCore
import Synchronization

/// A compiled kernel: one GLSL file with one set of defines and specialization constants.
struct PipelineKey: Hashable {
    var shader: Shader
    var defines: [String: String]
    var specialization: [UInt32]
    /// Storage buffers, bound in order at set 0, bindings 0..<n.
    var bindings: Int
    /// `Kernel.requiresFullSubgroups`.
    var fullSubgroups = false
}

/// A built pipeline's handles and binding count.
// Vulkan handles are plain, immutable identifiers; the store hands them out under its lock.
struct Pipeline: @unchecked Sendable {
    let handle: VkPipeline
    let layout: VkPipelineLayout
    let setLayout: VkDescriptorSetLayout
    let bindings: Int
    let name: String
}

/// Pipelines by kernel, built on first use; the driver's `VkPipelineCache` is loaded from and saved
/// to the cache folder, keyed by the device's pipeline-cache UUID and driver version.
// Safe to share: the handles are immutable after init and the pipelines are kept under `state`
// (vkCreateComputePipelines synchronizes the pipeline cache itself).
final class PipelineStore: @unchecked Sendable {
    static let pushConstantBytes = 128
    private let device: VkDevice
    private let compiler: ShaderCompiler
    private let cache: VkPipelineCache?
    private let cachePath: String?
    // Plain, immutable Vulkan handles, kept under `state`.
    private struct Layouts: @unchecked Sendable {
        let set: VkDescriptorSetLayout
        let pipeline: VkPipelineLayout
    }
    private let state = Mutex<(pipelines: [PipelineKey: Pipeline], layouts: [Int: Layouts])>(([:], [:]))
    private struct ResolvedKernel: Hashable, @unchecked Sendable {
        let kernel: AnyHashable
        let specialization: [UInt32]
        let bindings: Int
    }
    private let resolvedPipelines = Mutex<[ResolvedKernel: Pipeline]>([:])
    /// Set 1 of every pipeline: the step scalars' one storage buffer (`StepScalars`).
    let stepScalarsLayout: VkDescriptorSetLayout

    init(device: VkDevice, info: VulkanDeviceInfo, compiler: ShaderCompiler) throws {
        self.device = device
        self.compiler = compiler
        cachePath = compiler.cacheDirectory.map {
            "\($0)/pipelines-\(String(info.vendorID, radix: 16))-\(String(info.deviceID, radix: 16))-\(info.driverVersion)-\(info.pipelineCacheUUID).bin"
        }
        let initial = cachePath.flatMap { try? FileIO.read($0) }.flatMap { Self.pipelineCacheData($0, for: info) } ?? []
        cache = try Self.makePipelineCache(device, initial)
        stepScalarsLayout = try Self.makeSetLayout(device, bindings: 1)
    }

    /// The driver's data in a pipeline-cache file when the file is whole (`CacheEnvelope`) and its
    /// `VkPipelineCacheHeaderVersionOne` is this device's: vendor, device and pipelineCacheUUID.
    /// Drivers should reject foreign data themselves; not every one does so gracefully.
    static func pipelineCacheData(_ file: [UInt8], for info: VulkanDeviceInfo) -> [UInt8]? {
        guard let data = CacheEnvelope.unwrap(.pipelineCache, file), data.count >= 32 else { return nil }
        let (headerSize, version, vendor, deviceID) = data.withUnsafeBytes {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt32.self), $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
             $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self), $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        }
        let uuid = data[16..<32].map { String(format2: $0) }.joined()
        guard headerSize >= 32, Int(headerSize) <= data.count, version == VK_PIPELINE_CACHE_HEADER_VERSION_ONE.rawValue,
              vendor == info.vendorID, deviceID == info.deviceID, uuid == info.pipelineCacheUUID else { return nil }
        return data
    }

    /// A pipeline cache seeded with `initial`, or empty when the driver refuses that data.
    private static func makePipelineCache(_ device: VkDevice, _ initial: [UInt8]) throws -> VkPipelineCache? {
        var info = VkPipelineCacheCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO
        var created: VkPipelineCache?
        let result = initial.withUnsafeBytes { bytes in
            info.initialDataSize = bytes.count
            info.pInitialData = bytes.baseAddress
            return vkCreatePipelineCache(device, &info, nil, &created)
        }
        if result == VK_SUCCESS { return created }
        guard !initial.isEmpty else { try vkCheck(result, "vkCreatePipelineCache"); return nil }
        return try makePipelineCache(device, [])
    }

    /// Writes the pipeline cache and destroys every pipeline.
    func destroy() {
        save()
        state.withLock { s in
            for p in s.pipelines.values { vkDestroyPipeline(device, p.handle, nil) }
            for layouts in s.layouts.values {
                vkDestroyPipelineLayout(device, layouts.pipeline, nil)
                vkDestroyDescriptorSetLayout(device, layouts.set, nil)
            }
            s = ([:], [:])
        }
        vkDestroyDescriptorSetLayout(device, stepScalarsLayout, nil)
        vkDestroyPipelineCache(device, cache, nil)
    }

    func save() {
        guard let cachePath else { return }
        var size = 0
        guard vkGetPipelineCacheData(device, cache, &size, nil) == VK_SUCCESS, size > 0 else { return }
        var data = [UInt8](repeating: 0, count: size)
        guard vkGetPipelineCacheData(device, cache, &size, &data) == VK_SUCCESS else { return }
        let file = data.withUnsafeBytes { CacheEnvelope.wrap(.pipelineCache, UnsafeRawBufferPointer(rebasing: $0.prefix(size))) }
        file.withUnsafeBytes { try? FileIO.writeAtomically(cachePath, $0) }
    }

    /// A kernel's pipeline by the kernel value itself: a dispatch hashes a few enums rather than
    /// building its defines and hashing their strings, which only the first use of a kernel does.
    func pipeline<K: Kernel>(for kernel: K, specialization: [UInt32], bindings: Int) throws -> Pipeline {
        let resolved = ResolvedKernel(kernel: kernel, specialization: specialization, bindings: bindings)
        if let p = resolvedPipelines.withLock({ $0[resolved] }) { return p }
        let p = try pipeline(PipelineKey(shader: K.shader, defines: kernel.defines, specialization: specialization, bindings: bindings,
                                               fullSubgroups: kernel.requiresFullSubgroups))
        resolvedPipelines.withLock { $0[resolved] = p }
        return p
    }

    func pipeline(_ key: PipelineKey) throws -> Pipeline {
        if let p = state.withLock({ $0.pipelines[key] }) { return p }
        let words = try key.shader.spirv(defines: key.defines, compiler: compiler)
        let layouts = try self.layouts(key.bindings)
        let (setLayout, layout) = (layouts.set, layouts.pipeline)

        var moduleInfo = VkShaderModuleCreateInfo()
        moduleInfo.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
        var module: VkShaderModule?
        try words.withUnsafeBufferPointer { w in
            moduleInfo.codeSize = w.count * 4
            moduleInfo.pCode = w.baseAddress
            try vkCheck(vkCreateShaderModule(device, &moduleInfo, nil, &module), "vkCreateShaderModule(\(key.shader.rawValue))")
        }
        defer { vkDestroyShaderModule(device, module, nil) }

        var entries = key.specialization.indices.map {
            VkSpecializationMapEntry(constantID: UInt32($0), offset: UInt32($0 * 4), size: 4)
        }
        var values = key.specialization
        var handle: VkPipeline?
        try entries.withUnsafeMutableBufferPointer { e in
            try values.withUnsafeMutableBytes { v in
                var specialization = VkSpecializationInfo(mapEntryCount: UInt32(e.count), pMapEntries: e.baseAddress,
                                                          dataSize: v.count, pData: v.baseAddress)
                try "main".withCString { entry in
                    try withUnsafePointer(to: &specialization) { spec in
                        var info = VkComputePipelineCreateInfo()
                        info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
                        info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
                        info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
                        // The kernel sizes its workgroups in whole subgroups of the device's size.
                        if key.fullSubgroups { info.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT.rawValue }
                        info.stage.module = module
                        info.stage.pName = entry
                        info.stage.pSpecializationInfo = e.isEmpty ? nil : spec
                        info.layout = layout
                        try vkCheck(vkCreateComputePipelines(device, cache, 1, &info, nil, &handle),
                                    "vkCreateComputePipelines(\(key.shader.rawValue))")
                    }
                }
            }
        }
        let name = String(key.shader.rawValue.prefix { $0 != "." })
        let pipeline = Pipeline(handle: handle!, layout: layout, setLayout: setLayout, bindings: key.bindings, name: name)
        state.withLock { $0.pipelines[key] = pipeline }
        return pipeline
    }

    /// One descriptor-set layout of n storage buffers per n, and a pipeline layout of it, the step
    /// scalars' set and a 128-byte push-constant range.
    private func layouts(_ n: Int) throws -> Layouts {
        if let l = state.withLock({ $0.layouts[n] }) { return l }
        let setLayout = try Self.makeSetLayout(device, bindings: n)
        var range = VkPushConstantRange(stageFlags: VK_SHADER_STAGE_COMPUTE_BIT.rawValue, offset: 0,
                                        size: UInt32(Self.pushConstantBytes))
        var layoutInfo = VkPipelineLayoutCreateInfo()
        layoutInfo.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
        layoutInfo.setLayoutCount = 2
        layoutInfo.pushConstantRangeCount = 1
        var layout: VkPipelineLayout?
        let setLayouts: [VkDescriptorSetLayout?] = [setLayout, stepScalarsLayout]
        try setLayouts.withUnsafeBufferPointer { s in
            try withUnsafePointer(to: &range) { r in
                layoutInfo.pSetLayouts = s.baseAddress
                layoutInfo.pPushConstantRanges = r
                try vkCheck(vkCreatePipelineLayout(device, &layoutInfo, nil, &layout), "vkCreatePipelineLayout")
            }
        }
        let result = Layouts(set: setLayout, pipeline: layout!)
        state.withLock { $0.layouts[n] = result }
        return result
    }

    /// A descriptor-set layout of `n` storage buffers at bindings 0..<n.
    private static func makeSetLayout(_ device: VkDevice, bindings n: Int) throws -> VkDescriptorSetLayout {
        var bindings = (0..<n).map { i in
            var b = VkDescriptorSetLayoutBinding()
            b.binding = UInt32(i)
            b.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
            b.descriptorCount = 1
            b.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
            return b
        }
        var setInfo = VkDescriptorSetLayoutCreateInfo()
        setInfo.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
        setInfo.bindingCount = UInt32(n)
        var setLayout: VkDescriptorSetLayout?
        try bindings.withUnsafeMutableBufferPointer { b in
            setInfo.pBindings = UnsafePointer(b.baseAddress)
            try vkCheck(vkCreateDescriptorSetLayout(device, &setInfo, nil, &setLayout), "vkCreateDescriptorSetLayout")
        }
        return setLayout!
    }
}
