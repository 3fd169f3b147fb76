import CLowRank
import Glibc
import LowRank

/// How every entry point runs its body: errors become a status and the calling thread's last
/// error, so that nothing thrown ever crosses into the caller (a trap would kill its interpreter).
enum ABI {
    static func call(_ body: () throws -> Void) -> Int32 {
        do {
            try body()
            LastError.clear()
            return status(LOWRANK_OK)
        } catch let error as ABIError {
            LastError.set(error.message)
            return status(error.status)
        } catch let error as LowRankError {
            LastError.set(error.description)
            return status(status(for: error.kind))
        } catch {
            LastError.set("\(error)")
            return status(LOWRANK_INVALID_ARGUMENT)
        }
    }

    static func status(_ s: lowrank_status) -> Int32 { Int32(bitPattern: s.rawValue) }

    static func status(for kind: LowRankError.Kind) -> lowrank_status {
        switch kind {
        case .shapeMismatch: LOWRANK_SHAPE_MISMATCH
        case .dtypeMismatch: LOWRANK_DTYPE_MISMATCH
        case .invalidArgument: LOWRANK_INVALID_ARGUMENT
        case .deviceUnavailable: LOWRANK_DEVICE_UNAVAILABLE
        case .unsupported: LOWRANK_UNSUPPORTED
        case .shaderCompilation, .vulkan: LOWRANK_DEVICE_ERROR
        case .outOfMemory: LOWRANK_OUT_OF_MEMORY
        case .fileFormat: LOWRANK_FILE_FORMAT
        case .io: LOWRANK_IO
        case .numerical: LOWRANK_NUMERICAL
        }
    }

    /// The pointee of a required out-pointer or options struct, or an error naming the argument.
    static func required<T>(_ pointer: T?, _ name: String) throws -> T {
        guard let pointer else { throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(name) is NULL") }
        return pointer
    }

    /// A required NUL-terminated UTF-8 argument.
    static func string(_ pointer: UnsafePointer<CChar>?, _ name: String) throws -> String {
        let p = try required(pointer, name)
        guard let s = String(validatingCString: p) else { throw ABIError(LOWRANK_INVALID_ARGUMENT, "\(name) is not UTF-8") }
        return s
    }

    /// Copies `text` into the caller's buffer as the header's string convention says.
    static func copy(_ text: String, to buffer: UnsafeMutablePointer<CChar>?, capacity: Int, length: UnsafeMutablePointer<size_t>?) throws {
        let length = try required(length, "length")
        let utf8 = Array(text.utf8)
        length.pointee = utf8.count
        guard let buffer, capacity > utf8.count else {
            throw ABIError(LOWRANK_BUFFER_TOO_SMALL, "the string needs \(utf8.count + 1) bytes with its NUL, the buffer has \(capacity)")
        }
        for (i, byte) in utf8.enumerated() { buffer[i] = CChar(bitPattern: byte) }
        buffer[utf8.count] = 0
    }

    /// A copy of the caller's `count` elements at `pointer` (the caller vouches for the count).
    static func elements<T>(_ pointer: UnsafePointer<T>?, _ count: Int, _ name: String) throws -> [T] {
        let p = try required(pointer, name)
        return Array(UnsafeBufferPointer(start: p, count: count))
    }
}

/// A failure the ABI layer itself finds (a NULL pointer, a bad handle, a small buffer).
struct ABIError: Error {
    let status: lowrank_status
    let message: String
    init(_ status: lowrank_status, _ message: String) { (self.status, self.message) = (status, message) }
}

/// Each thread's last error message, as C libraries keep `errno`: a copy owned by the thread,
/// freed when it is replaced or the thread exits.
enum LastError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    static func clear() {
        guard let old = pthread_getspecific(key) else { return }
        pthread_setspecific(key, nil)
        free(old)
    }

    static var current: UnsafePointer<CChar>? {
        pthread_getspecific(key).map { UnsafePointer($0.assumingMemoryBound(to: CChar.self)) }
    }
}
