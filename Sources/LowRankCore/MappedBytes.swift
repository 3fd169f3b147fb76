import Glibc

/// A file's bytes mapped read-only, unmapped with the last reference: readers take tensors from
/// the page cache, so host memory never holds a copy of a whole checkpoint. Bytes given in memory
/// are copied into an anonymous mapping, so both kinds are read the same way. A mapped file must
/// not be truncated while it is in use (the kernel would stop the process at the missing pages).
// Safe to share: the mapping is read-only and immutable after init (the pointer is what is not Sendable).
public final class MappedBytes: @unchecked Sendable {
    private let bytes: UnsafeRawBufferPointer
    /// Whether the pages come from a file (and can be dropped and read again) or hold a copy.
    private let isFile: Bool

    public init(contentsOf path: String) throws {
        let (descriptor, size) = try FileIO.openRegularFile(path)
        defer { close(descriptor) }
        bytes = try Self.map(size, path: path) { mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0) }
        isFile = true
    }

    public init(copying source: some Collection<UInt8>) throws {
        let size = source.count
        let memory = try Self.map(size, path: "<memory>") { mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) }
        if size > 0 { UnsafeMutableRawBufferPointer(mutating: memory).copyBytes(from: source) }
        bytes = memory
        isFile = false
    }

    /// The bytes, valid only inside `body`: the mapping lives at least as long as the call.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(bytes) }
    }

    /// Drops the pages of `range` from the process's resident memory once their bytes are copied
    /// elsewhere (a tensor on its device): a file's pages stay in the page cache and come back on
    /// the next read, so loading a checkpoint never holds it and the loaded model at once. A copy
    /// in memory keeps its pages (dropping them would zero them).
    public func evict(_ range: Range<Int>) {
        guard isFile, let base = bytes.baseAddress, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        let end = Swift.min((range.upperBound + page - 1) / page * page, bytes.count)
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    /// An empty file has no mapping (mmap refuses length 0).
    private static func map(_ size: Int, path: String, _ body: () -> UnsafeMutableRawPointer?) throws -> UnsafeRawBufferPointer {
        guard size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let base = body(), base != MAP_FAILED else {
            let reason = String(cString: strerror(errno))
            throw LowRankError(errno == ENOMEM ? .outOfMemory : .io, "cannot map \(size) bytes: \(reason)", context: [("file", path)])
        }
        return UnsafeRawBufferPointer(start: base, count: size)
    }
}
