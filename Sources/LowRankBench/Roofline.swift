import LowRank

/// A device's roofline: attainable throughput at arithmetic intensity I (flops per byte) is
/// `min(peak flops, I · peak bandwidth)`. The peaks are the device's own probe measurements;
/// for GPUs it knows, the vendor's figures ride along for reference.
public struct Roofline: Sendable {
    public var measured: DevicePeaks
    public var vendor: VendorPeaks?

    public init(measured: DevicePeaks, deviceName: String) {
        self.measured = measured
        self.vendor = VendorPeaks.known(deviceName)
    }

    /// Which roof bounds a result with this work and traffic, and the share of it reached in
    /// `seconds`. Work without flops (a copy, a quantize) is bounded by memory.
    public func share(flops: Double, bytes: Double, seconds: Double) -> (bound: String, share: Double) {
        guard seconds > 0 else { return ("memory", 0) }
        let memoryRoof = bytes / measured.bytesPerSecond, computeRoof = flops / measured.flopsPerSecond
        // The roof is the slower of the two floors: time at peak bandwidth or at peak compute.
        return computeRoof > memoryRoof ? ("compute", computeRoof / seconds) : ("memory", memoryRoof / seconds)
    }
}

/// A vendor's datasheet peaks: memory bandwidth and f32 (non-tensor-core) FMA throughput.
public struct VendorPeaks: Sendable, Codable {
    public var name: String
    public var bytesPerSecond: Double
    public var flopsPerSecond: Double

    /// Datasheet figures of GPUs this project is run on; matched by a substring of the driver's
    /// device name, the most specific first.
    static let table: [(match: [String], peaks: VendorPeaks)] = [
        (["H200"], VendorPeaks(name: "NVIDIA H200 SXM", bytesPerSecond: 4.8e12, flopsPerSecond: 66.9e12)),
        (["H100", "PCIe"], VendorPeaks(name: "NVIDIA H100 PCIe", bytesPerSecond: 2.0e12, flopsPerSecond: 51.2e12)),
        (["H100", "NVL"], VendorPeaks(name: "NVIDIA H100 NVL", bytesPerSecond: 3.9e12, flopsPerSecond: 60.0e12)),
        (["H100"], VendorPeaks(name: "NVIDIA H100 SXM5", bytesPerSecond: 3.35e12, flopsPerSecond: 66.9e12)),
        (["A100", "80GB"], VendorPeaks(name: "NVIDIA A100 80GB SXM", bytesPerSecond: 2.039e12, flopsPerSecond: 19.5e12)),
        (["A100"], VendorPeaks(name: "NVIDIA A100 40GB", bytesPerSecond: 1.555e12, flopsPerSecond: 19.5e12)),
        (["L4"], VendorPeaks(name: "NVIDIA L4", bytesPerSecond: 0.3e12, flopsPerSecond: 30.3e12)),
        (["RTX 4090"], VendorPeaks(name: "NVIDIA GeForce RTX 4090", bytesPerSecond: 1.008e12, flopsPerSecond: 82.6e12)),
        (["RTX 3090"], VendorPeaks(name: "NVIDIA GeForce RTX 3090", bytesPerSecond: 0.936e12, flopsPerSecond: 35.6e12)),
        (["MI300X"], VendorPeaks(name: "AMD Instinct MI300X", bytesPerSecond: 5.3e12, flopsPerSecond: 81.7e12)),
    ]

    public static func known(_ deviceName: String) -> VendorPeaks? {
        table.first { entry in entry.match.allSatisfy { deviceName.contains($0) } }?.peaks
    }
}
