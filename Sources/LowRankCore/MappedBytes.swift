import Glibc

/// A file's bytes mapped read-only, unmapped with the last reference: readers take tensors from
/// the page cache, so host memory never holds a copy of a whole checkpoint. Bytes given in memory
/// are copied into an anonymous mapping, so both kinds are read the same way. A mapped file must
/// not be truncated while it is in use (the kernel would stop the process at the missing pages).
public final class MappedBytes: @unchecked Sendable {
    private let bytes: UnsafeRawBufferPointer

    public init(contentsOf path: String) throws {
        let (descriptor, size) = try FileIO.openRegularFile(path)
        defer { close(descriptor) }
        bytes = try Self.map(size, path: path) { mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0) }
    }

    public init(copying source: some Collection<UInt8>) throws {
        let size = source.count
        let memory = try Self.map(size, path: "<memory>") { mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) }
        if size > 0 { UnsafeMutableRawBufferPointer(mutating: memory).copyBytes(from: source) }
        bytes = memory
    }

    /// The bytes, valid only inside `body`: the mapping lives at least as long as the call.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(bytes) }
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
