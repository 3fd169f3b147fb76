import Glibc
import Synchronization

/// An exclusive lock on an output folder, held until released (or the process ends, however it
/// ends: the kernel drops a `flock` with its holder): a second writer to the same folder, in this
/// process or another, is refused with an error naming the folder and the holder's pid.
///
/// The lock is a file beside the folder, `.<name>.lock` (beside, not in it, because a folder that
/// is replaced whole, as `merge --out` is, would take a lock inside it away with it). It is removed
/// on release; one left by a killed holder is harmless and reused.
public final class OutputLock: Sendable {
    /// The lock file.
    public let path: String
    /// The locked file's descriptor, -1 once released (by `release()` or the deinit, on any thread).
    private let descriptor: Mutex<Int32>

    public init(folder: String) throws {
        let parent = FileIO.parent(of: folder)
        try FileIO.makeDirectories(parent)
        // Resolved, so that `out`, `./out` and `/abs/out` are one lock.
        path = (FileIO.canonicalPath(parent) ?? parent) + "/." + FileIO.lastComponent(folder) + ".lock"
        var held: Int32 = -1
        while true {
            let d = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard d >= 0 else {
                throw LowRankError(.io, "cannot create the lock file: \(String(cString: strerror(errno)))", context: [("folder", folder), ("file", path)])
            }
            guard flock(d, LOCK_EX | LOCK_NB) == 0 else {
                let holder = Self.holder(d)
                close(d)
                throw LowRankError(.io, "another writer\(holder.map { " (pid \($0))" } ?? "") is using this output folder; wait for it to finish or choose another folder",
                                   context: [("folder", folder), ("lock", path)])
            }
            // A holder that released between our open and flock unlinked the file we locked: retry
            // on the one now at the path.
            var opened = stat(), current = stat()
            if fstat(d, &opened) == 0, stat(path, &current) == 0, opened.st_ino == current.st_ino, opened.st_dev == current.st_dev {
                held = d
                break
            }
            close(d)
        }
        descriptor = Mutex(held)
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(held, 0)
        _ = pid.withUnsafeBytes { pwrite(held, $0.baseAddress, $0.count, 0) }
    }

    deinit { release() }

    /// Unlocks now (also done when the lock is freed).
    public func release() {
        descriptor.withLock { d in
            guard d >= 0 else { return }
            unlink(path)
            close(d)
            d = -1
        }
    }

    /// Runs `body` holding the lock on `folder`.
    public static func holding<T>(_ folder: String, _ body: () throws -> T) throws -> T {
        let lock = try OutputLock(folder: folder)
        defer { lock.release() }
        return try body()
    }

    /// The pid the holder wrote into the lock file.
    private static func holder(_ descriptor: Int32) -> Int? {
        var bytes = [UInt8](repeating: 0, count: 32)
        let n = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        return n > 0 ? Int(String(decoding: bytes[..<n], as: UTF8.self).filter(\.isNumber)) : nil
    }
}
