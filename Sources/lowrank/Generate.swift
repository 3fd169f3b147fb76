import ArgumentParser
import Foundation
import LowRank
import LowRankModels
import LowRankText

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a model, with or without an adapter, with a KV cache.",
        discussion: """
        Without --model, the built-in model `lowrank train` trains by default (byte-level: each byte of the text a \
        token), so `lowrank generate --adapter lowrank-default-adapter --prompt "The adapter"` tries the default job's \
        adapter. The prompt is --prompt (with a chat template, the model's unless --no-chat-template, one user turn after --system's \
        turn), --messages (a JSON file: a list of {"role", "content"} or {"messages": […]}) or --prompt-ids. A conversation \
        is rendered with the generation prompt. Generation stops at generation_config.json's eos_token_id, the \
        tokenizer's EOS or the template's end-of-turn token, or after --max-new-tokens. The text is streamed to stdout as \
        it is produced; --json prints {"ids": [generated ids], "text": …} at the end instead.
        """)

    @Option(help: "A Hugging Face model folder (default: the built-in byte-level model of `lowrank train`).") var model: String?
    @Option(help: "A PEFT adapter folder, applied unmerged.") var adapter: String?
    @Flag(help: "Load --adapter even if it names another base model or architecture.") var forceAdapter = false
    @Option(help: "The prompt text.") var prompt: String?
    @Option(help: "A system message before --prompt's user turn (needs a chat template).") var system: String?
    @Option(help: "A JSON file of the conversation: [{\"role\", \"content\"}…] or {\"messages\": […]}.") var messages: String?
    @Option(help: "The prompt as token ids, comma-separated (no tokenizer needed).") var promptIds: String?
    @Flag(help: "Encode --prompt as plain text (BOS/EOS as the tokenizer adds them), not as a chat turn.") var noChatTemplate = false
    @Option(help: "Tokens to generate at most.") var maxNewTokens = 256
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Keep the k most probable tokens; 0 keeps all.") var topK = 0
    @Option(help: "Keep the most probable tokens up to this probability; 1 keeps all.") var topP: Float = 1
    @Option(help: "Seed of the draws.") var seed: UInt64 = 0
    @Flag(help: "Print {\"ids\": …, \"text\": …} at the end instead of streaming the text.") var json = false
    @Option(help: "Quantize the frozen projections at load, as train --quantize does.") var quantize: Quantization?
    @OptionGroup var device: DeviceOptions
    @OptionGroup var weights: FrozenWeightOptions

    func validate() throws {
        if forceAdapter, adapter == nil { throw ValidationError("--force-adapter applies to --adapter") }
        guard [prompt, messages, promptIds].compactMap({ $0 }).count == 1 else {
            throw ValidationError("give one of --prompt, --messages and --prompt-ids")
        }
        if system != nil, prompt == nil { throw ValidationError("--system goes with --prompt") }
        if system != nil, noChatTemplate { throw ValidationError("--system needs the chat template") }
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
        do { try sampling.validate() } catch let e as LowRankError { throw ValidationError(e.message) }
    }

    private var sampling: SamplingSettings { SamplingSettings(temperature: temperature, topK: topK, topP: topP, seed: seed) }

    func run() throws {
        guard let model else { return try runDefaultModel() }
        let source = try ModelSources.open(model)
        let text = try source.textFormat(trainOnPrompt: false)
        let ids = try promptIDs(text, folder: model)
        let backend = weights.apply(to: try Engine.backend(try device.request, validation: device.validationEnabled))
        let llama = try LlamaModel(checkpoint: source, on: backend, quantize: quantize?.dtype, dtype: weights.dtype?.dtype)
        let stops = try StopTokens.of(modelDirectory: model, tokenizer: text?.tokenizer, chatTemplate: noChatTemplate ? nil : text?.chatTemplate)
        var stream = text.map { TextStream(tokenizer: $0.tokenizer) }
        let generated = try generate(llama, prompt: ids, stops: stops) { id in
            if stream != nil { write(stream!.append(id)) } else { write("\(id) ") }
        }
        finish(generated, text: text.map { JSON.string($0.tokenizer.decode(generated, skipSpecialTokens: true)) } ?? .null,
               rest: stream?.finish() ?? "")
    }

    /// The built-in model, whose tokens are the bytes of UTF-8 text.
    private func runDefaultModel() throws {
        if messages != nil || system != nil { throw ValidationError("the built-in model has no chat template: give --prompt or --prompt-ids") }
        if quantize != nil || weights.dtype != nil { throw ValidationError("--quantize and --dtype apply to a --model folder") }
        let ids = try prompt.map { text in Array(text.utf8).map(Int32.init) } ?? parsedPromptIDs()
        let llama = try DefaultJob.model(on: weights.apply(to: try Engine.backend(try device.request, validation: device.validationEnabled)))
        var pending: [UInt8] = []
        let generated = try generate(llama, prompt: ids, stops: []) { id in
            // A character's bytes are printed once they are all there.
            pending.append(UInt8(id))
            if let piece = String(validating: pending, as: UTF8.self) { write(piece); pending.removeAll() }
        }
        let bytes = generated.map { UInt8($0) }
        finish(generated, text: .string(String(decoding: bytes, as: UTF8.self)), rest: String(decoding: pending, as: UTF8.self))
    }

    private func generate(_ llama: LlamaModel, prompt: [Int32], stops: Set<Int32>, stream: (Int32) -> Void) throws -> [Int32] {
        let adapter = try self.adapter.map { try ModelAdapter(contentsOf: $0, on: llama, force: forceAdapter) }
        return try TextGenerator(model: llama, adapter: adapter).generate(prompt: prompt, maxNewTokens: maxNewTokens, sampling: sampling,
                                                                          stopTokens: stops) { id in if !json { stream(id) } }
    }

    /// `--json`'s line, or the end of the streamed text.
    private func finish(_ generated: [Int32], text: JSON, rest: String) {
        if json {
            print(JSON.object(["ids": .array(generated.map { .number(Double($0)) }), "text": text]).serialized)
        } else {
            write(rest + "\n")
        }
    }

    private func parsedPromptIDs() throws -> [Int32] {
        let given = promptIds ?? ""
        let parts = given.split(separator: ",", omittingEmptySubsequences: false)
        let ids = parts.compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
        guard ids.count == parts.count, !ids.isEmpty else {
            throw LowRankError(.invalidArgument, "--prompt-ids must be comma-separated token ids, got \"\(given)\"")
        }
        return ids
    }

    private func promptIDs(_ text: TextFormat?, folder: String) throws -> [Int32] {
        if promptIds != nil { return try parsedPromptIDs() }
        guard let text else {
            throw LowRankError(.fileFormat, "the model has no tokenizer (a folder's tokenizer.json, a GGUF file's tokenizer.ggml.*) to encode the prompt with; give --prompt-ids",
                               context: [("folder", folder)])
        }
        if let messages { return try text.generationPrompt(messages: try Self.conversation(messages)) }
        let prompt = self.prompt!
        guard text.chatTemplate != nil, !noChatTemplate else { return text.tokenizer.encode(prompt) }
        let turns = (system.map { [TextFormat.message("system", $0)] } ?? []) + [TextFormat.message("user", prompt)]
        return try text.generationPrompt(messages: turns)
    }

    /// The messages of a `--messages` file.
    static func conversation(_ path: String) throws -> [JinjaValue] {
        let json = try JSON.read(path, what: "the conversation")
        do {
            return try TextFormat.messages(json)
        } catch let e as LowRankError {
            throw e.adding("file", path)
        }
    }

    private func write(_ s: String) {
        FileHandle.standardOutput.write(Data(s.utf8))
    }
}
