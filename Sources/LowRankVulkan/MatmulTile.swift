/// The scalar kernel's tiling of one product (`Shaders/matmul.comp`'s specialization constants): a
/// BM×BN block of C per workgroup over steps of BK, each thread a TM×TN part of it.
public struct MatmulTile: Hashable, Sendable, CustomStringConvertible {
    public var bm: Int, bn: Int, bk = 8
    public var tm: Int, tn: Int
    /// Ranges of K computed by separate workgroups and summed in a second pass (`SplitK`); 1 for none.
    public var splits = 1

    /// 128×128 in 8×8 per thread: 64 FMAs per k from 16 values read from shared memory (2 FLOPs per
    /// byte in f32, 2.67 with a 16-bit B, 4 with both operands 16-bit), for products with room for many
    /// workgroups of it.
    public static let large = MatmulTile(bm: 128, bn: 128, tm: 8, tn: 8)
    /// 64×64 in 8×4 per thread, ggml-vulkan's medium tile.
    public static let medium = MatmulTile(bm: 64, bn: 64, tm: 8, tn: 4)
    /// 32×32 in 4×4 per thread, one 64-invocation workgroup.
    public static let small = MatmulTile(bm: 32, bn: 32, tm: 4, tn: 4)

    /// 16×128 in 4×8 per thread, for products with few rows (`dA = duᵀ·x`, `A·Wᵀ`: M = r).
    public static let fewRows = MatmulTile(bm: 16, bn: 128, tm: 4, tn: 8)
    /// 128×16 in 8×4 per thread, for products with few columns (`u = x·Aᵀ`: N = r).
    public static let fewColumns = MatmulTile(bm: 128, bn: 16, tm: 8, tn: 4)

    var threads: Int { (bm / tm) * (bn / tn) }
    /// Workgroups over an M×N product.
    func tiles(m: Int, n: Int) -> Int { ((m + bm - 1) / bm) * ((n + bn - 1) / bn) }
    /// Two buffers of both operands' k-major tiles, each row padded by a quad: f32 tiles' size, which
    /// 16-bit operands' tiles halve.
    var sharedBytes: Int { 2 * bk * (bm + 4 + bn + 4) * 4 }

    /// The shader's names of `specialization`, in `constant_id` order.
    static let constantNames = ["local_size_x", "BM", "BN", "BK", "TM", "TN"]
    /// The constants in `constant_id` order.
    var specialization: [UInt32] { [threads, bm, bn, bk, tm, tn].map(UInt32.init) }

    /// `128×128×8 (8×8 per thread)`, `16×128×8 (4×8 per thread), split-K 4`.
    public var description: String { "\(bm)×\(bn)×\(bk) (\(tm)×\(tn) per thread)" + (splits > 1 ? ", split-K \(splits)" : "") }

    /// The tile for an M×N product on `device`, as ggml-vulkan chooses among its large, medium and small
    /// tiles: small when M or N is at most 32, medium when at most 64, else large; a skinny tile when one
    /// side is at most 16 and the other longer than 64 (a LoRA rank). Tiles its vendor rules disable
    /// (`allows`) or the device cannot run (invocations, shared memory) give way to the next smaller.
    static func choose(m: Int, n: Int, device: VulkanDeviceInfo) -> MatmulTile {
        let wanted: [MatmulTile] = m <= 16 && n > 64 ? [.fewRows] : n <= 16 && m > 64 ? [.fewColumns]
            : min(m, n) <= 32 ? [.small] : min(m, n) <= 64 ? [] : [.large]
        let limits = device.limits
        return (wanted + [.medium, .small]).first {
            allows($0, vendor: device.vendorID) && $0.threads <= limits.maxWorkgroupInvocations
                && $0.sharedBytes <= limits.maxComputeSharedMemoryBytes
        } ?? .small
    }

    /// ggml-vulkan's vendor rules for its scalar tiles: no large tile on Intel (it keeps that for cooperative
    /// matrices), Qualcomm or Apple, and only the medium one on Apple. On AMD ggml keeps its large tile for
    /// cooperative matrices too, as its 128 outputs per thread cost registers; this large tile's 64 do not
    /// (docs/isa: 80 VGPRs, 12 subgroups per SIMD on RDNA2, as ggml's medium tile), so AMD keeps it.
    static func allows(_ tile: MatmulTile, vendor: UInt32) -> Bool {
        switch vendor {
        case 0x106B: tile == .medium
        case 0x8086, 0x5143: tile != .large
        default: true
        }
    }
}
