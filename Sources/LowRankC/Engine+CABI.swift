import CLowRank
import Glibc
import LowRank

@c public func lowrank_abi_version() -> UInt32 { UInt32(LOWRANK_ABI_VERSION) }

@c public func lowrank_version() -> UnsafePointer<CChar> { UnsafePointer(versionString) }

@c public func lowrank_last_error() -> UnsafePointer<CChar> {
    LastError.current ?? UnsafeRawPointer(emptyString.utf8Start).assumingMemoryBound(to: CChar.self)
}

// Both live as long as the library; neither is ever written.
private nonisolated(unsafe) let versionString = strdup(Engine.version)!
private let emptyString: StaticString = ""

@c public func lowrank_devices(_ validation: Int32, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t,
                               _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        let (devices, problem) = Engine.devices(validation: validation != 0)
        let list = devices.map { JSON.object(["identifier": .string($0.identifier), "name": .string($0.name), "kind": .string($0.kind)]) }
        let report = JSON.object(["devices": .array(list), "selected": .string(try Engine.resolve(.automatic, validation: validation != 0)),
                                  "vulkan_problem": problem.map { .string($0) } ?? .null])
        try ABI.copy(report.serialized, to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_engine_open(_ device: UnsafePointer<CChar>?, _ validation: Int32, _ engine: UnsafeMutablePointer<UInt64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(engine, "engine")
        let request = try device.map { try DeviceRequest(parsing: try ABI.string($0, "device")) } ?? .automatic
        let backend = try Engine.backend(request, validation: validation != 0)
        out.pointee = HandleTable.openEngine(EngineEntry(backend: backend, validation: validation != 0))
    }
}

@c public func lowrank_engine_device(_ engine: UInt64, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t,
                                     _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        let backend = try HandleTable.engine(engine).backend
        try ABI.copy("\(backend.identifier) (\(backend.deviceName))", to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_engine_close(_ engine: UInt64) -> Int32 {
    ABI.call { try HandleTable.closeEngine(engine) }
}
