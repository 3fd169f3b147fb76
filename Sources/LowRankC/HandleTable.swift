import CLowRank
import LowRank
import LowRankModels
import Synchronization

/// What a handle names: an engine (a backend), a model that belongs to one, or a tokenizer.
enum HandleEntry {
    case engine(EngineEntry)
    case model(ModelSession)
    case tokenizer(TokenizerSession)
}

final class EngineEntry: Sendable {
    let backend: any Backend
    let validation: Bool
    init(backend: any Backend, validation: Bool) { (self.backend, self.validation) = (backend, validation) }
}

/// Every open handle. Numbers are never reused, so a closed handle is told apart from one that
/// never existed, and a stale one can never reach another object.
enum HandleTable {
    private struct Table {
        var next: UInt64 = 1
        var entries: [UInt64: HandleEntry] = [:]
        /// The models of each engine, closed with it.
        var models: [UInt64: [UInt64]] = [:]
    }

    private static let table = Mutex(Table())

    static func openEngine(_ entry: EngineEntry) -> UInt64 { open(.engine(entry)) }

    static func openModel(_ session: ModelSession) -> UInt64 { open(.model(session)) }

    static func openTokenizer(_ session: TokenizerSession) -> UInt64 { open(.tokenizer(session)) }

    /// The next number, given to `entry`; a model is listed under its engine, to be closed with it.
    private static func open(_ entry: HandleEntry) -> UInt64 {
        table.withLock { t in
            let id = t.next
            t.next += 1
            t.entries[id] = entry
            if case .model(let session) = entry { t.models[session.engineHandle, default: []].append(id) }
            return id
        }
    }

    static func engine(_ handle: UInt64) throws -> EngineEntry {
        try table.withLock { t in
            guard case .engine(let e)? = t.entries[handle] else { throw missing(handle, t, "an engine") }
            return e
        }
    }

    static func model(_ handle: UInt64) throws -> ModelSession {
        try table.withLock { t in
            guard case .model(let m)? = t.entries[handle] else { throw missing(handle, t, "a model") }
            return m
        }
    }

    static func tokenizer(_ handle: UInt64) throws -> TokenizerSession {
        try table.withLock { t in
            guard case .tokenizer(let text)? = t.entries[handle] else { throw missing(handle, t, "a tokenizer") }
            return text
        }
    }

    static func closeTokenizer(_ handle: UInt64) throws {
        try table.withLock { t in
            guard case .tokenizer? = t.entries[handle] else { throw missing(handle, t, "a tokenizer") }
            t.entries[handle] = nil
        }
    }

    /// Closes an engine and its models; their memory goes when the last call using them returns.
    static func closeEngine(_ handle: UInt64) throws {
        try table.withLock { t in
            guard case .engine? = t.entries[handle] else { throw missing(handle, t, "an engine") }
            for model in t.models[handle] ?? [] { t.entries[model] = nil }
            t.entries[handle] = nil
            t.models[handle] = nil
        }
    }

    static func closeModel(_ handle: UInt64) throws {
        try table.withLock { t in
            guard case .model(let m)? = t.entries[handle] else { throw missing(handle, t, "a model") }
            t.entries[handle] = nil
            t.models[m.engineHandle]?.removeAll { $0 == handle }
        }
    }

    private static func missing(_ handle: UInt64, _ t: Table, _ wanted: String) -> ABIError {
        let message = switch t.entries[handle] {
        case .engine?: "handle \(handle) is an engine, not \(wanted)"
        case .model?: "handle \(handle) is a model, not \(wanted)"
        case .tokenizer?: "handle \(handle) is a tokenizer, not \(wanted)"
        case nil where handle != 0 && handle < t.next: "handle \(handle) (\(wanted)) was closed"
        case nil: "\(handle) is not a handle (\(wanted) was expected)"
        }
        return ABIError(LOWRANK_INVALID_HANDLE, message)
    }
}
