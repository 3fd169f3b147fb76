import CLowRank
import LowRank
import LowRankModels
import LowRankText
import Synchronization

@c public func lowrank_tokenizer_load(_ path: UnsafePointer<CChar>?, _ tokenizer: UnsafeMutablePointer<UInt64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(tokenizer, "tokenizer")
        let path = try ABI.string(path, "path")
        // A folder needs only its tokenizer files, not a model's config.json.
        let text = ModelSources.isGGUF(path) ? try ModelSources.open(path).textFormat(trainOnPrompt: false)
            : FileIO.isDirectory(path) ? try TextFormat(modelDirectory: path)
            : TextFormat(tokenizer: try Tokenizer.load(path), chatTemplate: nil)
        guard let text else {
            throw LowRankError(.io, "the model has no tokenizer (a folder's tokenizer.json, a GGUF file's tokenizer.ggml.*)", context: [("file", path)])
        }
        out.pointee = HandleTable.openTokenizer(TokenizerSession(text))
    }
}

@c public func lowrank_model_tokenizer(_ model: UInt64, _ tokenizer: UnsafeMutablePointer<UInt64>?) -> Int32 {
    ABI.call {
        let out = try ABI.required(tokenizer, "tokenizer")
        // A new handle on the tokenizer read with the model: closing it leaves the model's.
        out.pointee = try HandleTable.model(model).text.get().map(HandleTable.openTokenizer) ?? 0
    }
}

@c public func lowrank_tokenizer_encode(_ tokenizer: UInt64, _ text: UnsafePointer<CChar>?, _ textLength: size_t, _ addSpecialTokens: Int32,
                                        _ ids: UnsafeMutablePointer<Int32>?, _ capacity: Int64, _ count: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        let bytes = textLength == 0 ? [] : try ABI.elements(UnsafeRawPointer(try ABI.required(text, "text")).assumingMemoryBound(to: UInt8.self),
                                                              textLength, "text")
        guard let string = String(validating: bytes, as: UTF8.self) else { throw ABIError(LOWRANK_INVALID_ARGUMENT, "text is not UTF-8") }
        let encoded = try HandleTable.tokenizer(tokenizer).with { $0.tokenizer.encode(string, addSpecialTokens: addSpecialTokens != 0) }
        try ABI.copy(encoded, to: ids, capacity: capacity, count: count)
    }
}

@c public func lowrank_tokenizer_decode(_ tokenizer: UInt64, _ ids: UnsafePointer<Int32>?, _ count: Int64, _ skipSpecialTokens: Int32,
                                        _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t, _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        guard count >= 0 else { throw ABIError(LOWRANK_INVALID_ARGUMENT, "count must not be negative, got \(count)") }
        let values = count == 0 ? [] : try ABI.elements(ids, Int(count), "ids")
        let text = try HandleTable.tokenizer(tokenizer).with { $0.tokenizer.decode(values, skipSpecialTokens: skipSpecialTokens != 0) }
        try ABI.copy(text, to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_tokenizer_apply_chat_template(_ tokenizer: UInt64, _ messages: UnsafePointer<CChar>?, _ addGenerationPrompt: Int32,
                                                     _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t,
                                                     _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        let json = try JSON.parse(Array(try ABI.string(messages, "messages").utf8))
        let text = try HandleTable.tokenizer(tokenizer).with { format in
            try format.render(try TextFormat.messages(json), addGenerationPrompt: addGenerationPrompt != 0)
        }
        try ABI.copy(text, to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_tokenizer_encode_example(_ tokenizer: UInt64, _ example: UnsafePointer<CChar>?, _ trainOnPrompt: Int32,
                                                _ ids: UnsafeMutablePointer<Int32>?, _ labels: UnsafeMutablePointer<Int32>?, _ capacity: Int64,
                                                _ count: UnsafeMutablePointer<Int64>?) -> Int32 {
    ABI.call {
        let line = Array(try ABI.string(example, "example").utf8)
        let json: JSON
        do { json = try JSON.parse(line) } catch let e as LowRankError { throw LowRankError(.fileFormat, "the example is not JSON: \(e.message)") }
        // As `lowrank train` reads the line, with this call's choice of training on the prompt.
        let tokenized = { (format: TextFormat?) throws -> sending ([Int32], [Int32]) in
            var format = format
            format?.trainOnPrompt = trainOnPrompt != 0
            let (values, targets) = try TokenDataset.example(json, text: { format })
            return (values, targets ?? values)
        }
        // Handle 0, no tokenizer, reads token examples only, as `lowrank train` does for a model without one.
        let (values, targets) = tokenizer == 0 ? try tokenized(nil) : try HandleTable.tokenizer(tokenizer).with { try tokenized($0) }
        try ABI.copy(values, to: ids, capacity: capacity, count: count)
        try ABI.copy(targets, to: labels, capacity: capacity, count: count)
    }
}

@c public func lowrank_tokenizer_info(_ tokenizer: UInt64, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: size_t,
                                      _ length: UnsafeMutablePointer<size_t>?) -> Int32 {
    ABI.call {
        let info = try HandleTable.tokenizer(tokenizer).with { format in
            let t = format.tokenizer
            let id = { (value: Int32?) in value.map { JSON.number(Double($0)) } ?? .null }
            return JSON.object(["vocab_size": .number(Double(t.vocabularySize)), "bos_token_id": id(t.bosTokenID),
                                "eos_token_id": id(t.eosTokenID), "pad_token_id": id(t.padTokenID),
                                "has_chat_template": .bool(format.chatTemplate != nil)]).serialized
        }
        try ABI.copy(info, to: buffer, capacity: capacity, length: length)
    }
}

@c public func lowrank_tokenizer_close(_ tokenizer: UInt64) -> Int32 {
    ABI.call { try HandleTable.closeTokenizer(tokenizer) }
}

/// A tokenizer and chat template behind a handle; one lock serialises the calls on it.
final class TokenizerSession: Sendable {
    private let format: Mutex<TextFormat>

    init(_ format: sending TextFormat) { self.format = Mutex(format) }

    func with<R>(_ body: (TextFormat) throws -> sending R) throws -> sending R {
        try format.withLock { (format: inout TextFormat) throws -> sending R in try body(format) }
    }
}

extension ABI {
    /// Copies `values` into the caller's `capacity` elements, `count` set either way; too small a
    /// buffer is `LOWRANK_BUFFER_TOO_SMALL`, as for strings.
    static func copy(_ values: [Int32], to buffer: UnsafeMutablePointer<Int32>?, capacity: Int64, count: UnsafeMutablePointer<Int64>?) throws {
        let count = try required(count, "count")
        count.pointee = Int64(values.count)
        guard values.count <= capacity, values.isEmpty || buffer != nil else {
            throw ABIError(LOWRANK_BUFFER_TOO_SMALL, "the result has \(values.count) ids, the buffer holds \(max(capacity, 0))")
        }
        if let buffer { for (i, v) in values.enumerated() { buffer[i] = v } }
    }
}
