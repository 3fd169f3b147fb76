import LowRankCore

/// `tokenizer.json`'s `post_processor`, for single sequences: the ids it puts around the text's ids
/// when special tokens are added. ByteLevel's only adjusts offsets, so it adds nothing.
struct PostProcessor: Sendable {
    var prefix: [Int32] = []
    var suffix: [Int32] = []

    init(prefix: [Int32], suffix: [Int32]) {
        self.prefix = prefix
        self.suffix = suffix
    }

    init(_ json: TokenizerJSON) throws {
        switch try json.type {
        case "ByteLevel": break
        case "Sequence":
            for step in try json.array("processors") {
                let p = try PostProcessor(step)
                if !p.prefix.isEmpty || !p.suffix.isEmpty {
                    guard prefix.isEmpty, suffix.isEmpty else {
                        throw TokenizerJSON.unsupported(step.path, "more than one post-processor that adds tokens")
                    }
                    self = p
                }
            }
        case "TemplateProcessing":
            var specials: [String: [Int32]] = [:]
            for (name, entry) in try json.object("special_tokens") {
                specials[name] = try entry.array("ids").map { try $0.id }
            }
            var seenSequence = false
            for piece in try json.array("single") {
                if let special = piece.child("SpecialToken") {
                    let name = try special.string("id")
                    guard let ids = specials[name] else {
                        throw TokenizerJSON.malformed(special.path, "special token \(name.debugDescription) is not in special_tokens")
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else if let sequence = piece.child("Sequence") {
                    let name = try sequence.string("id")
                    guard name == "A", !seenSequence else {
                        throw TokenizerJSON.unsupported(sequence.path, "a single-sequence template must hold $A once, got \(name)")
                    }
                    seenSequence = true
                } else {
                    throw TokenizerJSON.malformed(piece.path, "expected {\"SpecialToken\": …} or {\"Sequence\": …}")
                }
            }
        case let other:
            throw TokenizerJSON.unsupported("\(json.path).type", "post-processor \(other) is not supported (TemplateProcessing, ByteLevel and Sequence are)")
        }
    }

    func apply(_ ids: [Int32]) -> [Int32] { prefix + ids + suffix }
}
