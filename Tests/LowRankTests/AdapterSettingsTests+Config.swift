import Foundation
import LowRank
import LowRankModels
import Testing

/// adapter_config.json read as PEFT's LoraConfig takes it, and adapters refused on another base model.
extension AdapterSettingsTests {
    /// A copy of fixture adapter `name` in `folder`, its config changed by `change`.
    func adapterCopy(_ name: String, in folder: String, _ change: (inout [String: JSON]) -> Void) throws -> String {
        let copy = folder + "/" + name
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: LlamaFixtures.path(name), toPath: copy)
        var config = try JSON.parse(FileIO.read(copy + "/" + ModelAdapter.configName)).object!
        change(&config)
        try FileIO.writeAtomically(copy + "/" + ModelAdapter.configName, text: JSON.object(config).serialized)
        return copy
    }

    /// A field of the wrong JSON type is refused naming it and what was found (lora_dropout "0.1"
    /// was read as 0), and r beyond 65536 is refused where it aborted out of memory.
    @Test func wrongTypesAndBounds() throws {
        let cases: [(String, JSON, [String])] = [
            ("lora_dropout", .string("0.1"), ["lora_dropout", "must be a number", "the string \"0.1\""]),
            ("lora_dropout", .number(1), ["lora_dropout", "in [0, 1)"]),
            ("r", .string("4"), ["r", "must be an integer"]),
            ("r", .number(4.5), ["r", "4.5"]),
            ("r", .number(100_000_000), ["r", "1...65536", "100000000"]),
            ("lora_alpha", .string("8"), ["lora_alpha", "must be a number"]),
            ("use_dora", .string("true"), ["use_dora", "must be true or false"]),
            ("target_modules", .number(5), ["target_modules", "the number 5"]),
            ("target_modules", .array([.string("q_proj"), .number(1)]), ["target_modules", "strings"]),
            ("target_modules", .string("(q_proj"), ["target_modules", "missing )"]),
            ("base_model_name_or_path", .number(3), ["base_model_name_or_path", "must be a string"]),
            ("rank_pattern", .number(5), ["rank_pattern", "must be an object"]),
            ("bias", .bool(false), ["bias", "must be a string"]),
            ("peft_type", .number(1), ["peft_type", "must be a string"]),
        ]
        try withTemporaryFolder { folder in
            for (field, value, words) in cases {
                let copy = try adapterCopy("lora", in: folder) { $0[field] = value }
                #expect { try AdapterSettings(contentsOf: copy + "/" + ModelAdapter.configName) } throws: { error in
                    (words + [ModelAdapter.configName]).allSatisfy { "\(error)".contains($0) }
                }
            }
        }
        for rank in [Int.max, 100_000_000, 65537, 0] {
            #expect { try AdapterSettings(rank: rank) } throws: { "\($0)".contains("r must be in 1...65536") }
        }
        #expect(try AdapterSettings(rank: 65536).rank == 65536)
    }

    /// Fields PEFT honours and this engine cannot yet are refused by name, never ignored; their
    /// absent forms (null, [], false) load.
    @Test func fieldsNotYetHonouredAreRefused() throws {
        let refused: [(String, JSON)] = [
            ("alora_invocation_tokens", .array([.number(7)])),
            ("lora_bias", .bool(true)),
            ("use_qalora", .bool(true)),
            ("bias", .string("some")),
        ]
        try withTemporaryFolder { folder in
            for (field, value) in refused {
                let copy = try adapterCopy("lora", in: folder) { $0[field] = value }
                #expect { try AdapterSettings(contentsOf: copy + "/" + ModelAdapter.configName) } throws: { "\($0)".contains(field) }
            }
            let absent = try adapterCopy("lora", in: folder) {
                $0["trainable_token_indices"] = .null; $0["modules_to_save"] = .null; $0["alora_invocation_tokens"] = .null
                $0["lora_bias"] = .bool(false); $0["use_qalora"] = .bool(false)
            }
            #expect(try AdapterSettings(contentsOf: absent + "/" + ModelAdapter.configName).rank > 0)
        }
    }

    /// A Llama adapter whose shapes fit a Qwen2 model is refused there (PEFT recorded
    /// LlamaForCausalLM and base model tiny-llama) unless forced; a base_model_name_or_path that
    /// names another folder is refused too, compared by its last path component.
    @Test func adapterOfAnotherBaseModel() throws {
        let backend = CPUBackend.shared
        let qwen = try LlamaFixtures.model("tiny-qwen2-bf16", on: backend)
        #expect { try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: qwen) } throws: { error in
            let text = "\(error)"
            return text.contains("LlamaForCausalLM") && text.contains("Qwen2ForCausalLM") && text.contains("--force-adapter")
                && text.contains("auto_mapping.base_model_class")
        }
        #expect(try ModelAdapter(contentsOf: LlamaFixtures.path("lora"), on: qwen, force: true).layers.count == 4)

        let llama = try LlamaFixtures.model(on: backend)
        try withTemporaryFolder { folder in
            let other = try adapterCopy("lora", in: folder) { $0["base_model_name_or_path"] = .string("meta-llama/Llama-3.1-8B") }
            #expect { try ModelAdapter(contentsOf: other, on: llama) } throws: { error in
                "\(error)".contains("meta-llama/Llama-3.1-8B") && "\(error)".contains("base_model_name_or_path")
            }
            #expect(try ModelAdapter(contentsOf: other, on: llama, force: true).layers.count == 4)
            let hub = try adapterCopy("lora", in: folder) { $0["base_model_name_or_path"] = .string("someone/tiny-llama") }
            #expect(try ModelAdapter(contentsOf: hub, on: llama).layers.count == 4)
            let unrecorded = try adapterCopy("lora", in: folder) { $0["base_model_name_or_path"] = .null; $0["auto_mapping"] = nil }
            #expect(try ModelAdapter(contentsOf: unrecorded, on: qwen).layers.count == 4)
        }
    }
}
