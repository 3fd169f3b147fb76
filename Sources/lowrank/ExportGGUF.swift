import ArgumentParser
import LowRank
import LowRankModels

struct ExportGGUF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-gguf",
        abstract: "Write a PEFT LoRA adapter as a llama.cpp adapter file (llama-cli --lora FILE.gguf).",
        discussion: """
        The file is what llama.cpp's convert_lora_to_gguf.py writes: general.type = adapter, adapter.type = lora, \
        adapter.lora.alpha, and blk.N.<tensor>.weight.lora_a / .lora_b per adapted projection, with the rows of q and k's \
        lora_b in the order of a GGUF base's q and k weights. llama.cpp scales every module by alpha/r, so DoRA, rsLoRA \
        (alpha/√r), an alpha_pattern and trained biases are refused: merge those instead (lowrank merge --out FILE.gguf).
        """)

    @Option(help: "A PEFT adapter folder (adapter_config.json, adapter_model.safetensors).") var adapter: String
    @Option(help: "The GGUF file to write.") var out: String
    @Option(help: "The base model (a folder or a GGUF file), for its head counts (default: the adapter's base_model_name_or_path when it is a local one).")
    var model: String?
    @Option(help: "The adapter tensors' type: f32 (as llama.cpp's converter writes them by default), f16 or bf16.")
    var outtype: FloatDType = .f32

    func run() throws {
        let settings = try AdapterSettings(contentsOf: adapter + "/" + ModelAdapter.configName)
        guard let base = model ?? (settings.baseModel.isEmpty ? nil : settings.baseModel),
              FileIO.exists(base + "/config.json") || (ModelSources.isGGUF(base) && FileIO.exists(base)) else {
            throw ValidationError("--model: the base model, a folder or GGUF file (its head counts order q and k's rows); "
                                  + "the adapter's base_model_name_or_path \(settings.baseModel.debugDescription) is no local model")
        }
        let config = try ModelSources.open(base).config
        let count = try GGUFAdapterExport.write(adapter: adapter, config: config, to: out, type: outtype.ggufType)
        print("wrote \(count) adapted modules to \(out) (llama.cpp: llama-cli -m BASE.gguf --lora \(out))")
    }
}

extension FloatDType {
    var ggufType: GGUF.TensorType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        }
    }
}
