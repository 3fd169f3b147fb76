/// A 64-bit FNV-1a digest fed piece by piece: what a checkpoint records of the data and model a
/// run was made with, to tell them apart from others on resume, and the key and checksum of the
/// shader caches' entries (not a defence against forgery).
public struct Digest: Sendable {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    public init() {}

    private mutating func mix(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01B3
        }
    }

    /// The values' bytes in memory order (little-endian wherever this runs), then a separator, so that `[1, 2] + [3]` and `[1] + [2, 3]` differ.
    public mutating func add<T: FixedWidthInteger>(_ values: [T]) {
        values.withUnsafeBytes { mix($0) }
        value = value &* 0x100_0000_01B3
    }

    /// The bytes as they are, with no separator: the checksum of one buffer.
    public mutating func add(raw bytes: UnsafeRawBufferPointer) {
        mix(bytes)
    }

    /// The digest of `parts`, each followed by a separator.
    public static func of(_ parts: [String]) -> UInt64 {
        var digest = Digest()
        for part in parts { digest.add(part) }
        return digest.value
    }

    public mutating func add(_ text: String) {
        mix(text.utf8)
        value = value &* 0x100_0000_01B3
    }

    /// 16 hexadecimal digits.
    public var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
