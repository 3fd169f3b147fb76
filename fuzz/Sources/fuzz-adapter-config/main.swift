import FuzzSupport
import Glibc
import LowRank
import LowRankModels

// adapter_config.json as AdapterSettings reads it, from a file: its reader takes only a path.
let path = (FileIO.isDirectory("/dev/shm") ? "/dev/shm" : "/tmp") + "/lowrank-fuzz-\(getpid())-adapter_config.json"
fuzz { bytes in
    try FileIO.writeAtomically(path, bytes)
    _ = try AdapterSettings(contentsOf: path)
    // EVA's and CorDA's fields, as the C ABI's peft_config takes them.
    let json = try JSON.read(path, what: "the adapter's config")
    if let eva = json["eva_config"], eva != .null { _ = try EVASettings(json: eva, path: path) }
    if let corda = json["corda_config"], corda != .null { _ = try CorDAMethod(json: corda, path: path) }
}
