import CVulkan
import Glibc
import LowRankCore

/// Throws for any result but VK_SUCCESS, naming the call; out-of-memory results get their own kind.
func vkCheck(_ result: VkResult, _ call: @autoclosure () -> String) throws {
    guard result != VK_SUCCESS else { return }
    switch result {
    case VK_ERROR_OUT_OF_DEVICE_MEMORY, VK_ERROR_OUT_OF_HOST_MEMORY:
        throw LowRankError(.outOfMemory, "\(call()) ran out of memory (\(result.rawValue)); free tensors or use smaller shapes",
                           context: [("call", call())])
    default:
        throw LowRankError(.vulkan, "\(call()) failed with VkResult \(result.rawValue)", context: [("call", call())])
    }
}

/// Reads a fixed-size C char array (imported as a tuple) as a String.
func string<T>(fromCArray tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Keeps C strings alive for the duration of a Vulkan call that takes `const char* const*`.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) throws -> R) rethrows -> R {
    let copies = strings.map { UnsafePointer<CChar>(strdup($0)) }
    defer { copies.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
    return try copies.withUnsafeBufferPointer { try body($0.baseAddress) }
}
