/// Which backend to run on: `cpu`, `vulkan` (the preferred Vulkan device), `vulkan:N`, or automatic.
public enum DeviceRequest: Sendable, Equatable, CustomStringConvertible {
    case automatic
    case cpu
    case vulkan(index: Int?)

    /// Parses the `LOWRANK_DEVICE` / `--device` syntax.
    public init(parsing text: String) throws {
        let t = text.lowercased()
        switch t {
        case "", "auto", "automatic": self = .automatic
        case "cpu": self = .cpu
        case "vulkan", "gpu": self = .vulkan(index: nil)
        default:
            guard t.hasPrefix("vulkan:"), let i = Int(t.dropFirst("vulkan:".count)), i >= 0 else {
                throw LowRankError(.invalidArgument, "unknown device '\(text)'; use cpu, vulkan or vulkan:N")
            }
            self = .vulkan(index: i)
        }
    }

    public var description: String {
        switch self {
        case .automatic: "auto"
        case .cpu: "cpu"
        case .vulkan(nil): "vulkan"
        case .vulkan(let i?): "vulkan:\(i)"
        }
    }
}
