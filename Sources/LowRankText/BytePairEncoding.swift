import LowRankCore

/// The BPE model of `tokenizer.json`: a vocabulary, merges ranked by their order, and the library's
/// handling of characters outside the vocabulary (`byte_fallback` to `<0xHH>` tokens, else
/// `unk_token`, fused with `fuse_unk`).
struct BytePairEncoding: Sendable {
    struct Merge: Sendable {
        var rank: Int32
        var id: Int32
    }

    let vocab: ByteKeyTable
    /// Token text by id; nil where the vocabulary has no such id.
    let tokens: [String?]
    let merges: [UInt64: Merge]
    let unknownID: Int32?
    let fuseUnknown: Bool
    /// With `byte_fallback`, each byte's `<0xHH>` id (nil where the vocabulary lacks it), looked up once.
    let byteFallbackIDs: [Int32?]?
    let ignoreMerges: Bool

    init(_ json: TokenizerJSON) throws {
        let type = try json.optionalString("type") ?? "BPE"
        guard type == "BPE" else { throw TokenizerJSON.unsupported("\(json.path).type", "model \(type) is not supported (only BPE)") }
        if let dropout = json.child("dropout"), dropout.value.number != 0 {
            throw TokenizerJSON.unsupported(dropout.path, "BPE dropout makes encoding random; only null or 0 is supported")
        }
        for affix in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = try json.optionalString(affix), !s.isEmpty {
                throw TokenizerJSON.unsupported("\(json.path).\(affix)", "BPE with \(affix) is not supported")
            }
        }
        let entries = try json.object("vocab")
        var vocab = ByteKeyTable(expectedCount: entries.count)
        var tokens: [String?] = []
        for (token, id) in entries {
            let id = try id.id
            vocab.insert(Array(token.utf8), id)
            if Int(id) >= tokens.count { tokens += Array(repeating: nil, count: Int(id) + 1 - tokens.count) }
            tokens[Int(id)] = token
        }
        self.vocab = vocab
        self.tokens = tokens

        var merges: [UInt64: Merge] = [:]
        for (rank, merge) in try json.array("merges").enumerated() {
            let pair: [String]
            if let line = merge.value.string {
                pair = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else {
                pair = merge.value.array?.compactMap(\.string) ?? []
            }
            guard pair.count == 2 else { throw TokenizerJSON.malformed(merge.path, "a merge must be two tokens (\"a b\" or [a, b])") }
            guard let left = vocab.value(pair[0].utf8), let right = vocab.value(pair[1].utf8) else {
                throw TokenizerJSON.malformed(merge.path, "merge token \((vocab.value(pair[0].utf8) == nil ? pair[0] : pair[1]).debugDescription) is not in the vocabulary")
            }
            guard let merged = vocab.value(Array(pair[0].utf8) + Array(pair[1].utf8)) else {
                throw TokenizerJSON.malformed(merge.path, "merged token \((pair[0] + pair[1]).debugDescription) is not in the vocabulary")
            }
            merges[Self.key(left, right)] = Merge(rank: Int32(rank), id: merged)
        }
        self.merges = merges

        if let unk = try json.optionalString("unk_token") {
            guard let id = vocab.value(unk.utf8) else { throw TokenizerJSON.malformed("\(json.path).unk_token", "unk_token \(unk.debugDescription) is not in the vocabulary") }
            unknownID = id
        } else {
            unknownID = nil
        }
        fuseUnknown = try json.bool("fuse_unk", default: false)
        byteFallbackIDs = try json.bool("byte_fallback", default: false) ? (0...255).map { [vocab] byte in
            let digits = Array("0123456789ABCDEF".utf8)
            return vocab.value(Array("<0x".utf8) + [digits[byte >> 4], digits[byte & 15], UInt8(ascii: ">")])
        } : nil
        ignoreMerges = try json.bool("ignore_merges", default: false)
    }

    @inline(__always)
    static func key(_ left: Int32, _ right: Int32) -> UInt64 { UInt64(UInt32(left)) << 32 | UInt64(UInt32(right)) }

    /// The ids of one pre-tokenized piece, appended to `ids`.
    func encode(_ word: UnsafeBufferPointer<UInt8>, into ids: inout [Int32]) {
        guard !word.isEmpty else { return }
        if ignoreMerges, let id = vocab.value(word) {
            ids.append(id)
            return
        }
        var symbols = initialSymbols(word)
        mergeAll(&symbols)
        ids += symbols
    }

    /// One id per character, or its bytes' `<0xHH>` ids, or unknown ids; as the library's `merge_word`.
    private func initialSymbols(_ word: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        var pendingUnknown = false
        var i = 0
        while i < word.count {
            let length = UTF8Scalars.length(leadByte: word[i])
            let character = UnsafeBufferPointer(rebasing: word[i..<min(i + length, word.count)])
            i += length
            if let id = vocab.value(character) {
                if pendingUnknown, let unknownID { symbols.append(unknownID) }
                pendingUnknown = false
                symbols.append(id)
                continue
            }
            if let byteFallbackIDs {
                let byteIDs = character.map { byteFallbackIDs[Int($0)] }
                if byteIDs.allSatisfy({ $0 != nil }) {
                    symbols += byteIDs.map { $0! }
                    continue
                }
            }
            guard let unknownID else { continue }
            if pendingUnknown, !fuseUnknown { symbols.append(unknownID) }
            pendingUnknown = true
        }
        if pendingUnknown, let unknownID { symbols.append(unknownID) }
        return symbols
    }

    /// Applies merges lowest rank first, leftmost first among equal ranks, as the library's
    /// `Word::merge_all` (a heap with stale entries skipped).
    private func mergeAll(_ symbols: inout [Int32]) {
        let count = symbols.count
        guard count > 1 else { return }
        var next = Array(1...count)
        var prev = Array(-1..<(count - 1))
        var alive = Array(repeating: true, count: count)
        var heap = MergeHeap()
        for i in 0..<(count - 1) {
            if let m = merges[Self.key(symbols[i], symbols[i + 1])] { heap.push(.init(rank: m.rank, position: Int32(i), id: m.id)) }
        }
        while let top = heap.pop() {
            let pos = Int(top.position)
            guard alive[pos], next[pos] < count else { continue }
            let right = next[pos]
            guard let m = merges[Self.key(symbols[pos], symbols[right])], m.id == top.id else { continue }
            symbols[pos] = top.id
            alive[right] = false
            next[pos] = next[right]
            if next[right] < count { prev[next[right]] = pos }
            if prev[pos] >= 0, let m = merges[Self.key(symbols[prev[pos]], symbols[pos])] {
                heap.push(.init(rank: m.rank, position: Int32(prev[pos]), id: m.id))
            }
            if next[pos] < count, let m = merges[Self.key(symbols[pos], symbols[next[pos]])] {
                heap.push(.init(rank: m.rank, position: top.position, id: m.id))
            }
        }
        var kept = 0
        for i in 0..<count where alive[i] {
            symbols[kept] = symbols[i]
            kept += 1
        }
        symbols.removeLast(count - kept)
    }
}

/// A binary min-heap of candidate merges ordered by rank, then position.
struct MergeHeap {
    struct Entry {
        var rank: Int32
        var position: Int32
        var id: Int32
        func precedes(_ other: Entry) -> Bool { rank != other.rank ? rank < other.rank : position < other.position }
    }

    private var entries: [Entry] = []

    mutating func push(_ e: Entry) {
        entries.append(e)
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].precedes(entries[parent]) else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = entries.first else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < entries.count, entries[l].precedes(entries[best]) { best = l }
                if r < entries.count, entries[r].precedes(entries[best]) { best = r }
                if best == i { break }
                entries.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
