import FuzzSupport
import Glibc
import LowRank
import LowRankModels

// adapter_config.json as AdapterSettings reads it, from a file: its reader takes only a path.
let path = (FileIO.isDirectory("/dev/shm") ? "/dev/shm" : "/tmp") + "/lowrank-fuzz-\(getpid())-adapter_config.json"
fuzz { bytes in
    try FileIO.writeAtomically(path, bytes)
    _ = try AdapterSettings(contentsOf: path)
}
