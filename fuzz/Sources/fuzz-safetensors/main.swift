import FuzzSupport
import LowRank

// A header the reader accepts must describe tensors it can hand out: every one read and converted.
fuzz { bytes in
    let file = try SafetensorsFile(bytes: Array(bytes), path: "fuzz.safetensors")
    for name in file.names {
        let entry = try file.entry(name)
        let values = try file.floats(name)
        require(values.count == entry.shape.count, "\(name): \(values.count) values for shape \(entry.shape)")
    }
}
