import LowRankCore

/// The framing of every file in the shader and pipeline caches: a magic tag naming the kind of
/// entry, the payload's length and its 64-bit FNV-1a checksum, then the payload. A torn write, a
/// flipped bit or a file of another kind fails the check and is treated as absent, so a corrupt
/// cache costs a recompile instead of a driver error ("vkCreateComputePipelines failed").
enum CacheEnvelope {
    /// What an entry holds; the raw value is the 4-byte tag at the start of its file.
    enum Kind: UInt32 {
        case spirv = 0x5653_524C  // "LRSV"
        case pipelineCache = 0x4350_524C  // "LRPC"
    }

    static let headerBytes = 16

    /// `payload` framed for `kind`.
    static func wrap(_ kind: Kind, _ payload: UnsafeRawBufferPointer) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(headerBytes + payload.count)
        withUnsafeBytes(of: kind.rawValue.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: payload.count).littleEndian) { bytes += $0 }
        withUnsafeBytes(of: checksum(payload).littleEndian) { bytes += $0 }
        bytes += payload
        return bytes
    }

    static func checksum(_ payload: UnsafeRawBufferPointer) -> UInt64 {
        var digest = Digest()
        digest.add(raw: payload)
        return digest.value
    }

    /// The payload of `file` when it is a whole, unaltered entry of `kind`, else nil.
    static func unwrap(_ kind: Kind, _ file: [UInt8]) -> [UInt8]? {
        guard file.count >= headerBytes else { return nil }
        let (tag, length, checksum) = file.withUnsafeBytes {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian,
             $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian,
             $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
        }
        guard tag == kind.rawValue, Int(length) == file.count - headerBytes else { return nil }
        let payload = Array(file[headerBytes...])
        return payload.withUnsafeBytes { Self.checksum($0) } == checksum ? payload : nil
    }
}
