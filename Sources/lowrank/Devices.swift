import ArgumentParser
import Foundation
import LowRank

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List every device the engine sees, and the one it would pick.")

    @Flag(help: "Print JSON: {\"devices\": [...], \"selected\": ID, \"vulkan_problem\": TEXT|null}.")
    var json = false

    @OptionGroup var options: DeviceOptions

    func run() throws {
        let (devices, problem) = Engine.devices(validation: options.validationEnabled)
        let selected = try Engine.resolve(try options.request, validation: options.validationEnabled)
        if json {
            struct Report: Encodable {
                var devices: [DeviceDescription]
                var selected: String
                var vulkan_problem: String?
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(Report(devices: devices, selected: selected, vulkan_problem: problem))
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if let problem { print("Vulkan: unavailable (\(problem))\n") }
        for d in devices {
            let mark = d.identifier == selected ? "*" : " "
            print("\(mark) \(d.identifier.padding(toLength: 9, withPad: " ", startingAt: 0)) \(d.name) [\(d.kind)]")
            guard let v = d.vulkan else { continue }
            let l = v.limits, f = v.features
            print("      driver \(v.driverName) \(v.driverInfo), Vulkan \(v.apiVersion), \(v.deviceLocalBytes >> 20) MiB device-local")
            print("      shared memory \(l.maxComputeSharedMemoryBytes) B, subgroup \(l.subgroupSize), workgroup ≤ \(l.maxWorkgroupInvocations), "
                + "storage range \(l.maxStorageBufferRange >> 20) MiB, allocation ≤ \(l.maxMemoryAllocationSize >> 20) MiB, "
                + "timestamp \(l.timestampPeriodNanoseconds) ns")
            let flags = [("fp16", f.shaderFloat16), ("16-bit storage", f.storageBuffer16Bit), ("8-bit storage", f.storageBuffer8Bit),
                         ("int8", f.shaderInt8), ("subgroup arithmetic", f.subgroupArithmetic),
                         ("subgroup quad", f.subgroupQuad)]
            print("      features: " + flags.map { "\($0.0) \($0.1 ? "yes" : "no")" }.joined(separator: ", "))
            let shapes = v.cooperativeMatrixShapes.map(\.description).joined(separator: ", ")
            print("      cooperative matrix: " + (f.cooperativeMatrix ? "yes (\(shapes))" : "no"))
        }
        print("\n* = selected")
    }
}
