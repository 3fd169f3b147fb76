import Foundation
import LowRank
@testable import LowRankVulkan
import Testing

/// The SPIR-V and pipeline caches on disk: a damaged or foreign entry is recompiled or ignored,
/// never handed to the driver.
@Suite struct ShaderCacheTests {
    /// A fresh cache folder with its `spirv` subfolder, removed by the caller.
    private func makeCacheFolder() throws -> String {
        let path = try makeTemporaryFolder()
        try FileManager.default.createDirectory(atPath: path + "/spirv", withIntermediateDirectories: true)
        return path
    }

    private func files(in folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).map { folder + "/" + $0 }.filter { !$0.hasSuffix("/spirv") }
    }

    /// Flips one byte in the middle of each file, past its envelope: the checksum is all that can notice.
    private func flipMiddleByte(of paths: [String]) throws {
        for path in paths {
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[CacheEnvelope.headerBytes + (bytes.count - CacheEnvelope.headerBytes) / 2] ^= 0x5A
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
    }

    @Test func damagedSPIRVEntriesAreRecompiled() throws {
        let folder = try makeCacheFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let defines = [("W_T", "float"), ("C_T", "float"), ("C_FROM_F32", "f32_to_f32")]
        let fresh = try ShaderCompiler(cacheDirectory: folder).spirv("embedding.comp", defines: defines)
        let entries = try files(in: folder + "/spirv")
        #expect(entries.count == 1)
        try flipMiddleByte(of: entries)
        #expect(try ShaderCompiler(cacheDirectory: folder).spirv("embedding.comp", defines: defines) == fresh)
        // The recompiled module replaced the damaged file; a torn (truncated) one is recompiled too.
        let rewritten = try [UInt8](Data(contentsOf: URL(fileURLWithPath: entries[0])))
        #expect(CacheEnvelope.unwrap(.spirv, rewritten) != nil)
        try Data(rewritten.prefix(rewritten.count / 2)).write(to: URL(fileURLWithPath: entries[0]))
        #expect(try ShaderCompiler(cacheDirectory: folder).spirv("embedding.comp", defines: defines) == fresh)
    }

    @Test func envelopesRefuseOtherKindsAndLengths() {
        let payload: [UInt8] = [1, 2, 3, 4, 5]
        let entry = payload.withUnsafeBytes { CacheEnvelope.wrap(.spirv, $0) }
        #expect(CacheEnvelope.unwrap(.spirv, entry) == payload)
        #expect(CacheEnvelope.unwrap(.pipelineCache, entry) == nil)
        #expect(CacheEnvelope.unwrap(.spirv, entry + [0]) == nil)
        #expect(CacheEnvelope.unwrap(.spirv, Array(entry.prefix(CacheEnvelope.headerBytes - 1))) == nil)
    }

    /// A run on a cache whose every SPIR-V entry is damaged and whose pipeline cache is another
    /// device's (a well-framed file with a foreign header) gives the same results as a clean run.
    @Test func vulkanRunsOnACorruptCache() throws {
        try onBackend(.vulkan) { backend in
            let shared = backend as! VulkanBackend
            let folder = try makeCacheFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let table = randomValues(5 * 3, seed: 3)
            func lookUp() throws -> [Float] {
                let device = try shared.sibling(shaders: ShaderCompiler(cacheDirectory: folder))
                let out = try Ops.execute(.embedding, [try Tensor(table, shape: [5, 3], on: device), try Tensor(ids: [4, 0, 2], on: device)])[0]
                return try out.floats()
            }
            let clean = try lookUp()
            #expect(clean == [Int](arrayLiteral: 4, 0, 2).flatMap { table[($0 * 3)..<($0 * 3 + 3)] })

            try flipMiddleByte(of: try files(in: folder + "/spirv"))
            let pipelineCaches = try files(in: folder)
            #expect(pipelineCaches.count == 1)
            for path in pipelineCaches {
                var data = CacheEnvelope.unwrap(.pipelineCache, try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))))!
                #expect(PipelineStore.pipelineCacheData(data.withUnsafeBytes { CacheEnvelope.wrap(.pipelineCache, $0) }, for: shared.info) != nil)
                data[8] ^= 0xFF  // the vendor id
                let foreign = data.withUnsafeBytes { CacheEnvelope.wrap(.pipelineCache, $0) }
                #expect(PipelineStore.pipelineCacheData(foreign, for: shared.info) == nil)
                try Data(foreign).write(to: URL(fileURLWithPath: path))
            }
            #expect(try lookUp() == clean)
        }
    }
}
