import CVulkan
import Synchronization

/// Messages of the Khronos validation layer (synchronization validation included), kept so that
/// tests can fail on any of them.
public final class ValidationLog: Sendable {
    private let entries = Mutex<[String]>([])

    public var messages: [String] { entries.withLock { $0 } }

    /// Returns and forgets the messages so far.
    public func drain() -> [String] { entries.withLock { e in defer { e.removeAll() }; return e } }

    func append(_ message: String) { entries.withLock { $0.append(message) } }

    /// The messenger callback: pUserData is this log, unretained (the instance owns both).
    static let callback: PFN_vkDebugUtilsMessengerCallbackEXT = { severity, _, data, userData in
        guard let userData, let data else { return VkBool32(VK_FALSE) }
        let log = Unmanaged<ValidationLog>.fromOpaque(userData).takeUnretainedValue()
        let level = severity.rawValue >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT.rawValue ? "error" : "warning"
        let text = data.pointee.pMessage.map { String(cString: $0) } ?? "(no message)"
        log.append("[\(level)] \(text)")
        return VkBool32(VK_FALSE)
    }
}
