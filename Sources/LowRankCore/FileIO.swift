import Glibc

/// Whole-file reads and atomic writes, with errors that name the file.
public enum FileIO {
    public static func read(_ path: String) throws -> [UInt8] {
        try MappedBytes(contentsOf: path).withBytes { Array($0) }
    }

    /// Opens `path` for reading when it is a regular file, with its size. A folder, FIFO, socket
    /// or device where a file belongs is refused by name.
    public static func openRegularFile(_ path: String) throws -> (descriptor: Int32, size: Int) {
        switch try open(forReading: path) {
        case .regular(let descriptor, let size, _): return (descriptor, size)
        case .other(let what): throw LowRankError(.io, "this is \(what) where a file belongs; only regular files are read", context: [("file", path)])
        case .absent: throw LowRankError(.io, "cannot open: \(String(cString: strerror(ENOENT)))", context: [("file", path)])
        }
    }

    /// What `open(forReading:)` found.
    enum Opened {
        /// A regular file, open: its descriptor (the caller closes it), size and permission bits.
        case regular(descriptor: Int32, size: Int, mode: mode_t)
        /// Something else, named ("a folder", "a FIFO", …); nothing is left open.
        case other(String)
        /// Nothing (or a symbolic link to nothing).
        case absent
    }

    /// Opens `path` for reading if it is a regular file. O_NONBLOCK keeps the open of a FIFO from
    /// waiting for a writer, and fstat tells what was opened before anything is read.
    static func open(forReading path: String) throws -> Opened {
        guard !path.utf8.contains(0) else { throw LowRankError(.io, "the path contains a NUL byte", context: [("file", path)]) }
        let descriptor = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            switch errno {
            case ENOENT: return .absent
            case ENXIO: return .other("a socket")
            case let error: throw LowRankError(.io, "cannot open: \(String(cString: strerror(error)))", context: [("file", path)])
            }
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw LowRankError(.io, "cannot stat: \(reason)", context: [("file", path)])
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(descriptor)
            return .other([S_IFDIR: "a folder", S_IFIFO: "a FIFO", S_IFSOCK: "a socket", S_IFCHR: "a character device", S_IFBLK: "a block device"][kind]
                ?? "something other than a regular file")
        }
        return .regular(descriptor: descriptor, size: Int(info.st_size), mode: info.st_mode & 0o7777)
    }

    /// Writes to a temporary file beside `path` and renames it into place, so that readers (and a
    /// run killed mid-write) never see half a file.
    public static func writeAtomically(_ path: String, _ bytes: UnsafeRawBufferPointer) throws {
        let temporary = "\(path).\(getpid()).tmp"
        guard let file = fopen(temporary, "wb") else {
            throw LowRankError(.io, "cannot write: \(String(cString: strerror(errno)))", context: [("file", path)])
        }
        let written = bytes.count == 0 ? 0 : fwrite(bytes.baseAddress, 1, bytes.count, file)
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        fclose(file)
        guard written == bytes.count, flushed, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw LowRankError(.io, "cannot write: \(reason)", context: [("file", path)])
        }
    }

    /// `text` as UTF-8, written atomically.
    public static func writeAtomically(_ path: String, text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try writeAtomically(path, $0) }
    }

    /// mkdir -p.
    public static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw LowRankError(.io, "cannot create folder: \(String(cString: strerror(errno)))", context: [("folder", prefix)])
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// The names in a folder (without `.` and `..`), sorted.
    public static func contents(ofDirectory path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw LowRankError(.io, "cannot list: \(String(cString: strerror(errno)))", context: [("folder", path)])
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// rm -rf: a file, or a folder and everything in it; nothing when the path does not exist.
    public static func removeTree(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in try contents(ofDirectory: path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw LowRankError(.io, "cannot remove: \(String(cString: strerror(errno)))", context: [("folder", path)]) }
        } else if unlink(path) != 0 {
            throw LowRankError(.io, "cannot remove: \(String(cString: strerror(errno)))", context: [("file", path)])
        }
    }

    /// The absolute path with links and `..` resolved, or nil when it does not exist.
    public static func canonicalPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
    }
}
