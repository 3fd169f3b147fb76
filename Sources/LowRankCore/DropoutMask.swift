/// The inverted-dropout mask of the LoRA branch, a pure function of (seed, row, column) so that
/// backward regenerates it instead of storing a `[T, d_in]` mask. `Shaders/common.glsl` computes
/// the same bits (`dropout_keep`); both must change together.
public struct DropoutMask: Sendable {
    public let seed: UInt32
    /// An element is kept when the top 24 bits of its hash are at least this.
    public let threshold: UInt32
    /// 1/(1−p): what kept elements are multiplied by.
    public let keepScale: Float

    public init(probability p: Float, seed: UInt32) {
        self.seed = seed
        threshold = UInt32((Double(p) * 16_777_216).rounded(.down))
        keepScale = p > 0 ? 1 / (1 - p) : 1
    }

    public var isIdentity: Bool { threshold == 0 }

    @inline(__always)
    public static func hash(_ value: UInt32) -> UInt32 {
        var x = value
        x ^= x >> 16
        x = x &* 0x7FEB_352D
        x ^= x >> 15
        x = x &* 0x846C_A68B
        x ^= x >> 16
        return x
    }

    @inline(__always)
    public func keeps(row: Int, column: Int) -> Bool {
        let h = Self.hash(Self.hash(UInt32(truncatingIfNeeded: row) ^ Self.hash(seed)) &+ UInt32(truncatingIfNeeded: column))
        return (h >> 8) >= threshold
    }

    /// The factor applied to element (row, column): 0 or 1/(1−p).
    @inline(__always)
    public func factor(row: Int, column: Int) -> Float { keeps(row: row, column: column) ? keepScale : 0 }
}
