import Foundation
import LowRank
import LowRankModels
import Testing

/// config.json checked as transformers reads it, and against the tensors the checkpoint holds.
extension LlamaInputErrorTests {
    /// The tiny Llama's weights with `extra` added, in one model.safetensors of `folder`.
    func rewriteWeights(_ folder: String, adding extra: [(name: String, tensor: Tensor)]) throws {
        let checkpoint = try HuggingFaceCheckpoint(folder: folder)
        let tensors = try checkpoint.config.expectedTensors.map { ($0.name, try checkpoint.tensor($0.name, on: CPUBackend.shared)) }
        try SafetensorsFile.write(tensors + extra, to: folder + "/model.safetensors")
    }

    /// Untrusted sizes whose products overflow (2^40 heads of 2^40) are an error naming the
    /// fields, where they trapped (exit 132, killing a Python interpreter with them).
    @Test func overflowingSizes() throws {
        try expectBrokenCheckpoint(["num_attention_heads 1099511627776 × head_dim 1099511627776", "config.json"]) {
            try writeConfig($0) { $0["num_attention_heads"] = .number(0x1p40); $0["head_dim"] = .number(0x1p40) }
        }
        try expectBrokenCheckpoint(["vocab_size", "× hidden_size", "beyond"]) {
            try writeConfig($0) { $0["vocab_size"] = .number(0x1p61) }
        }
    }

    /// A billion layers is beyond any Llama (llama.cpp's limit, 512), where the list of the
    /// tensors it implies grew to 24 GB; more layers than the checkpoint holds are refused from its
    /// headers at once; fewer leave tensors unused, which is refused naming them.
    @Test func layerCountAgainstTheCheckpoint() throws {
        try expectBrokenCheckpoint(["num_hidden_layers", "1...512", "1000000000", "config.json"]) {
            try writeConfig($0) { $0["num_hidden_layers"] = .number(1e9) }
        }
        try expectBrokenCheckpoint(["num_hidden_layers is 512", "holds 2 layers", "model.layers.2.input_layernorm.weight"]) {
            try writeConfig($0) { $0["num_hidden_layers"] = .number(512) }
        }
        try expectBrokenCheckpoint(["leaves unused", "model.layers.1.input_layernorm.weight"]) {
            try writeConfig($0) { $0["num_hidden_layers"] = .number(1) }
        }
        try expectBrokenCheckpoint(["1 tensor that config.json leaves unused", "model.extra.weight"]) { folder in
            try rewriteWeights(folder, adding: [("model.extra.weight", try Tensor([1, 2], shape: [2], on: CPUBackend.shared))])
        }
    }

    /// What transformers drops without a word still loads: RoPE's saved inverse frequencies, and
    /// an LM head that tied embeddings replace.
    @Test func tensorsTransformersIgnores() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model"
            try FileManager.default.copyItem(atPath: LlamaFixtures.path("tiny-llama"), toPath: model)
            try rewriteWeights(model, adding: [("model.layers.0.self_attn.rotary_emb.inv_freq", try Tensor([1, 0.1, 0.01, 0.001], shape: [4], on: CPUBackend.shared))])
            _ = try HuggingFaceCheckpoint(folder: model)
            try writeConfig(model) { $0["tie_word_embeddings"] = .bool(true) }
            #expect(try HuggingFaceCheckpoint(folder: model).config.tiedEmbeddings)
        }
    }

    /// A field of the wrong JSON type is refused naming it and what was found, not read as a default.
    @Test func wrongJSONTypes() throws {
        let cases: [(String, JSON, [String])] = [
            ("hidden_size", .string("32"), ["hidden_size", "must be an integer", "the string \"32\""]),
            ("hidden_size", .number(32.5), ["hidden_size", "32.5"]),
            ("model_type", .number(3), ["model_type", "must be a string"]),
            ("tie_word_embeddings", .string("false"), ["tie_word_embeddings", "must be true or false", "the string \"false\""]),
            ("rms_norm_eps", .string("1e-6"), ["rms_norm_eps", "must be a number"]),
            ("rms_norm_eps", .number(-1), ["rms_norm_eps", "at least 0"]),
            ("rope_parameters", .number(5), ["rope_parameters", "must be an object", "the number 5"]),
            ("rope_parameters", .array([]), ["rope_parameters", "must be an object", "a list of 0"]),
        ]
        for (field, value, words) in cases {
            try expectBrokenCheckpoint(words + ["config.json"]) { try writeConfig($0) { $0[field] = value } }
        }
    }

    /// RoPE as transformers' rope_config_validation checks it, refusing what it only warns about
    /// (a factor below 1, high_freq_factor not above low_freq_factor) and a theta that is not positive.
    @Test func ropeParameters() throws {
        let llama3 = try JSON.parse(FileIO.read(LlamaFixtures.path("tiny-llama/config.json")))["rope_parameters"]!.object!
        let cases: [([String: JSON], [String])] = [
            (["factor": .number(-2)], ["rope_parameters.factor", "at least 1", "-2"]),
            (["factor": .number(0)], ["rope_parameters.factor", "at least 1"]),
            (["factor": .string("8")], ["rope_parameters.factor", "must be a number"]),
            (["rope_theta": .number(0)], ["rope_theta", "positive"]),
            (["rope_theta": .number(-10000)], ["rope_theta", "positive"]),
            (["high_freq_factor": .number(1)], ["high_freq_factor", "greater than low_freq_factor"]),
            (["low_freq_factor": .number(0)], ["low_freq_factor", "positive"]),
            (["original_max_position_embeddings": .number(16.5)], ["original_max_position_embeddings", "integer"]),
            (["rope_type": .string("linear"), "factor": .number(0)], ["rope_parameters.factor", "at least 1"]),
            (["full_attention": .object(["rope_type": .string("linear"), "factor": .number(4)])], ["rope_parameters.full_attention", "per layer type"]),
        ]
        for (change, words) in cases {
            try expectBrokenCheckpoint(words) { try writeConfig($0) { $0["rope_parameters"] = .object(llama3.merging(change) { $1 }) } }
        }
        try expectBrokenCheckpoint(["rope_theta", "positive"]) { folder in
            try writeConfig(folder) { $0["rope_parameters"] = nil; $0["rope_theta"] = .number(0) }
        }
    }

    /// A sliding window of 0 is refused by name (it advised "use --seq-len 0 or less"); a window
    /// too small for any sequence says so instead of advising a --seq-len that cannot train.
    @Test func slidingWindow() throws {
        var json = try JSON.parse(FileIO.read(LlamaFixtures.path("tiny-llama/config.json"))).object!
        json["model_type"] = .string("mistral")
        json["sliding_window"] = .number(0)
        #expect { try LlamaConfig(json: .object(json)) } throws: { "\($0)".contains("sliding_window") && "\($0)".contains("1...") }
        json["sliding_window"] = .null
        #expect(try LlamaConfig(json: .object(json)).slidingWindow == nil)
        json["sliding_window"] = .number(1)
        let model = try LlamaModel(config: try LlamaConfig(json: .object(json)), seed: 1, on: CPUBackend.shared)
        #expect { try CausalLMPlan(model: model, adapter: nil, batch: 1, sequence: 2, training: false) } throws: { error in
            "\(error)".contains("no sequence of 2 tokens fits") && !"\(error)".contains("--seq-len 1")
        }
    }
}
