import Glibc

/// The write side of output folders: folders made visible whole by one rename, the leftovers of a
/// killed writer cleared, and files copied only when they are regular.
extension FileIO {
    /// Where `replaceFolder` keeps the folder it replaces until the new one is in place.
    private static func asideName(_ staged: String) -> String { staged + ".old" }

    /// Puts the complete folder `staged` at `target`, replacing any folder there, so that a reader
    /// (or a run killed at any moment) finds the old folder whole, the new one whole, or, between
    /// the two renames, neither at `target` but the old one at `<staged>.old`, which
    /// `restoreAside` puts back. (Glibc's module does not export renameat2's RENAME_EXCHANGE,
    /// which would swap the two in one call.)
    public static func replaceFolder(_ target: String, with staged: String) throws {
        try syncFolder(staged)
        let aside = asideName(staged), replacing = exists(target)
        if replacing {
            try removeTree(aside)
            try rename(target, to: aside)
        }
        do { try rename(staged, to: target) } catch {
            if replacing { try? rename(aside, to: target) }  // a failure leaves the old folder in place
            throw error
        }
        try syncFolder(parent(of: target))
        try removeTree(aside)
    }

    /// After a kill between `replaceFolder`'s renames: the old folder goes back to `target` when
    /// nothing took its place, and is removed otherwise.
    public static func restoreAside(of target: String, staged: String) throws {
        let aside = asideName(staged)
        guard exists(aside) else { return }
        if exists(target) { try removeTree(aside) } else { try rename(aside, to: target) }
    }

    /// Removes the `<name>.<pid>.tmp` files `writeAtomically` leaves when its writer is killed
    /// mid-file. Only for a folder no one else is writing (one this process holds the `OutputLock` of).
    public static func removeTemporaryFiles(in folder: String) throws {
        for name in (try? contents(ofDirectory: folder)) ?? [] where isTemporaryName(name) && !isDirectory(folder + "/" + name) {
            try removeTree(folder + "/" + name)
        }
    }

    private static func isTemporaryName(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 3 && parts.last == "tmp" && !parts[parts.count - 2].isEmpty && parts[parts.count - 2].allSatisfy(\.isNumber)
    }

    /// Copies `source` to `destination` (atomically) with its permission bits when it is a regular
    /// file, following a symbolic link to one; returns what it is instead, copying nothing, when it
    /// is not (a FIFO is never opened for reading, so it cannot block).
    public static func copyRegularFile(_ source: String, to destination: String) throws -> String? {
        let (descriptor, size, mode): (Int32, Int, mode_t)
        switch try open(forReading: source) {
        case .regular(let d, let s, let m): (descriptor, size, mode) = (d, s, m)
        case .other(let what): return what
        case .absent: return "a symbolic link to nothing"
        }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + done, $0.count - done) }
            guard n > 0 else { throw LowRankError(.io, "read \(done) of \(bytes.count) bytes", context: [("file", source)]) }
            done += n
        }
        try bytes.withUnsafeBytes { try writeAtomically(destination, $0) }
        guard chmod(destination, mode) == 0 else {
            throw LowRankError(.io, "cannot set the mode: \(String(cString: strerror(errno)))", context: [("file", destination)])
        }
        return nil
    }

    /// The folders of `path` (itself included) that do not exist yet, outermost first: those
    /// `makeDirectories(path)` would create, for a writer that fails to remove again.
    public static func missingFolders(in path: String) -> [String] {
        var missing: [String] = [], p = path
        while !exists(p) {
            missing.insert(p, at: 0)
            let up = parent(of: p)
            if up == p { break }
            p = up
        }
        return missing
    }

    /// The folder holding `path` ("." for a bare name).
    public static func parent(of path: String) -> String {
        let trimmed = trimmingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// The last component of `path`.
    public static func lastComponent(_ path: String) -> String {
        let trimmed = trimmingSlashes(path)
        return trimmed.lastIndex(of: "/").map { String(trimmed[trimmed.index(after: $0)...]) } ?? trimmed
    }

    private static func trimmingSlashes(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }

    private static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw LowRankError(.io, "cannot rename to \(to): \(String(cString: strerror(errno)))", context: [("folder", from)])
        }
    }

    /// fsync of a folder, so that the renames in it outlast a power cut as the files do.
    private static func syncFolder(_ folder: String) throws {
        let descriptor = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw LowRankError(.io, "cannot open: \(String(cString: strerror(errno)))", context: [("folder", folder)]) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw LowRankError(.io, "cannot sync: \(String(cString: strerror(errno)))", context: [("folder", folder)]) }
    }
}
