// Vulkan declarations without the loader's prototypes: every entry point is a function pointer that
// cvk_load fills from a dlopen'd libvulkan, so binaries start (on the CPU backend) where it is absent.
#ifndef CVULKAN_H
#define CVULKAN_H
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

/* VK_KHR_cooperative_matrix, for headers older than 1.3.255 (bookworm's are 1.3.239). */
#ifndef VK_KHR_cooperative_matrix
#define VK_KHR_cooperative_matrix 1
#define VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME "VK_KHR_cooperative_matrix"
typedef VkComponentTypeNV VkComponentTypeKHR;
typedef VkScopeNV VkScopeKHR;
typedef struct VkCooperativeMatrixPropertiesKHR {
    VkStructureType sType;
    void *pNext;
    uint32_t MSize;
    uint32_t NSize;
    uint32_t KSize;
    VkComponentTypeKHR AType;
    VkComponentTypeKHR BType;
    VkComponentTypeKHR CType;
    VkComponentTypeKHR ResultType;
    VkBool32 saturatingAccumulation;
    VkScopeKHR scope;
} VkCooperativeMatrixPropertiesKHR;
typedef struct VkPhysicalDeviceCooperativeMatrixFeaturesKHR {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrix;
    VkBool32 cooperativeMatrixRobustBufferAccess;
} VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
typedef VkResult (VKAPI_PTR *PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)(
    VkPhysicalDevice physicalDevice, uint32_t *pPropertyCount, VkCooperativeMatrixPropertiesKHR *pProperties);
#endif
/* Its structure types under names of our own, which Swift sees with either generation of headers. */
static const VkStructureType cvk_structure_type_cooperative_matrix_features = (VkStructureType)1000506000;
static const VkStructureType cvk_structure_type_cooperative_matrix_properties = (VkStructureType)1000506001;

#define CVK_GLOBAL_FUNCTIONS(X) \
    X(vkCreateInstance) \
    X(vkEnumerateInstanceExtensionProperties) \
    X(vkEnumerateInstanceLayerProperties) \
    X(vkEnumerateInstanceVersion)

#define CVK_INSTANCE_FUNCTIONS(X) \
    X(vkDestroyInstance) \
    X(vkEnumeratePhysicalDevices) \
    X(vkGetPhysicalDeviceProperties) \
    X(vkGetPhysicalDeviceProperties2) \
    X(vkGetPhysicalDeviceFeatures2) \
    X(vkGetPhysicalDeviceMemoryProperties) \
    X(vkGetPhysicalDeviceQueueFamilyProperties) \
    X(vkEnumerateDeviceExtensionProperties) \
    X(vkCreateDevice) \
    X(vkGetDeviceProcAddr) \
    X(vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR) \
    X(vkCreateDebugUtilsMessengerEXT) \
    X(vkDestroyDebugUtilsMessengerEXT)

#define CVK_DEVICE_FUNCTIONS(X) \
    X(vkDestroyDevice) \
    X(vkDeviceWaitIdle) \
    X(vkGetDeviceQueue) \
    X(vkQueueSubmit) \
    X(vkQueueWaitIdle) \
    X(vkAllocateMemory) \
    X(vkFreeMemory) \
    X(vkMapMemory) \
    X(vkUnmapMemory) \
    X(vkCreateBuffer) \
    X(vkDestroyBuffer) \
    X(vkGetBufferMemoryRequirements) \
    X(vkBindBufferMemory) \
    X(vkCreateShaderModule) \
    X(vkDestroyShaderModule) \
    X(vkCreateDescriptorSetLayout) \
    X(vkDestroyDescriptorSetLayout) \
    X(vkCreatePipelineLayout) \
    X(vkDestroyPipelineLayout) \
    X(vkCreateComputePipelines) \
    X(vkDestroyPipeline) \
    X(vkCreatePipelineCache) \
    X(vkDestroyPipelineCache) \
    X(vkGetPipelineCacheData) \
    X(vkCreateDescriptorPool) \
    X(vkDestroyDescriptorPool) \
    X(vkResetDescriptorPool) \
    X(vkAllocateDescriptorSets) \
    X(vkUpdateDescriptorSets) \
    X(vkCreateCommandPool) \
    X(vkDestroyCommandPool) \
    X(vkResetCommandPool) \
    X(vkAllocateCommandBuffers) \
    X(vkFreeCommandBuffers) \
    X(vkBeginCommandBuffer) \
    X(vkEndCommandBuffer) \
    X(vkCmdBindPipeline) \
    X(vkCmdBindDescriptorSets) \
    X(vkCmdPushConstants) \
    X(vkCmdDispatch) \
    X(vkCmdPipelineBarrier) \
    X(vkCmdCopyBuffer) \
    X(vkCmdFillBuffer) \
    X(vkCmdUpdateBuffer) \
    X(vkCmdResetQueryPool) \
    X(vkCmdWriteTimestamp) \
    X(vkCreateQueryPool) \
    X(vkDestroyQueryPool) \
    X(vkGetQueryPoolResults) \
    X(vkCreateFence) \
    X(vkDestroyFence) \
    X(vkResetFences) \
    X(vkWaitForFences)

/* Importers see each pointer as const (Swift imports it as a `let`, safe to call from any thread);
 * only the loader, which defines CVK_IMPLEMENTATION, writes them. They are hidden: they carry the
 * Vulkan API's own names, so a shared library exporting them (libLowRankC.so) would stand in for
 * the loader's functions in a process that links it, and the loader's own calls would land on them. */
#define CVK_HIDDEN __attribute__((visibility("hidden")))
#ifdef CVK_IMPLEMENTATION
#define CVK_DECLARE(name) extern CVK_HIDDEN PFN_##name name;
#else
#define CVK_DECLARE(name) extern CVK_HIDDEN PFN_##name const name;
#endif
CVK_GLOBAL_FUNCTIONS(CVK_DECLARE)
CVK_INSTANCE_FUNCTIONS(CVK_DECLARE)
CVK_DEVICE_FUNCTIONS(CVK_DECLARE)
#undef CVK_DECLARE

/// Opens the loader at `path` (NULL: "libvulkan.so.1") and resolves the global entry points.
/// Returns 0 on success; otherwise a message is readable from cvk_last_error().
int cvk_load(const char *path);
/// Resolves instance- and device-level entry points through the instance (valid for every device).
void cvk_load_instance(VkInstance instance);
const char *cvk_last_error(void);

/// Helpers for values the Swift importer cannot see (function-like macros).
static inline uint32_t cvk_make_api_version(uint32_t variant, uint32_t major, uint32_t minor, uint32_t patch) {
    return VK_MAKE_API_VERSION(variant, major, minor, patch);
}
static inline uint32_t cvk_api_version_major(uint32_t v) { return VK_API_VERSION_MAJOR(v); }
static inline uint32_t cvk_api_version_minor(uint32_t v) { return VK_API_VERSION_MINOR(v); }
static inline uint32_t cvk_api_version_patch(uint32_t v) { return VK_API_VERSION_PATCH(v); }
#endif
