import Glibc
import LowRank

/// Rows of token ids to train or evaluate on, from JSONL or a NumPy `.npy` array of int32 or int64
/// `[N, seq]`. A JSONL line is `{"input_ids": [...]}` with optional `"labels"` (unshifted, −100 where
/// not trained on), or, with a `TextFormat`, `{"text"}`, `{"prompt", "completion"}` or `{"messages"}`.
/// Every id and label is checked against the vocabulary when the file is read, naming the file,
/// row and position of the first bad one.
public struct TokenDataset: Sendable {
    public let rows: [[Int32]]
    /// Each row's labels (−100: not trained on); nil when every next token is trained on.
    public let labels: [[Int32]]?
    /// The lengths of the sequences each row holds, in order, once packed (`packed(into:)`); nil:
    /// each row is one sequence.
    public let sequenceLengths: [[Int]]?
    public let path: String

    public init(rows: [[Int32]], labels: [[Int32]]? = nil, path: String = "<memory>", vocabularySize: Int, maxLength: Int? = nil) throws {
        if let maxLength, maxLength < 2 {
            throw LowRankError(.invalidArgument, "the sequence length must be at least 2 (a token and the next one it predicts), got \(maxLength)",
                               context: [("file", path), ("sequence length", "\(maxLength)")])
        }
        try Self.checkVocabulary(rows.map { $0[...] }, "token id", vocabularySize: vocabularySize, context: [("file", path)])
        if let labels {
            guard labels.count == rows.count else {
                throw LowRankError(.shapeMismatch, "\(labels.count) rows of labels for \(rows.count) rows of token ids", context: [("file", path)])
            }
            if let r = rows.indices.first(where: { rows[$0].count != labels[$0].count }) {
                throw LowRankError(.shapeMismatch, "row \(r)'s labels do not match its token ids in length", context: [("file", path), ("row", "\(r)")])
            }
            try Self.checkVocabulary(labels.map { $0[...] }, "label", vocabularySize: vocabularySize, ignoring: CausalLMPlan.ignoredLabel,
                                     context: [("file", path)])
        }
        // A row longer than the sequence length becomes consecutive windows of it, so no token is dropped.
        func windows(_ rows: [[Int32]]) -> [[Int32]] {
            maxLength.map { length in
                rows.flatMap { row in stride(from: 0, to: row.count, by: length).map { Array(row[$0..<min($0 + length, row.count)]) } }
            } ?? rows
        }
        // A window predicts something when it has 2 tokens and, with labels, a trained one after its first.
        let kept = windows(labels ?? rows).map { $0.count >= 2 && (labels == nil || $0.dropFirst().contains { $0 != CausalLMPlan.ignoredLabel }) }
        self.rows = zip(windows(rows), kept).filter(\.1).map(\.0)
        self.labels = labels.map { zip(windows($0), kept).filter(\.1).map(\.0) }
        sequenceLengths = nil
        self.path = path
        guard !self.rows.isEmpty else {
            throw LowRankError(.invalidArgument, "the data has no row of at least 2 tokens with a trained label after the first, so nothing to predict",
                               context: [("file", path)])
        }
    }

    /// Rows already checked, as they are.
    init(checkedRows rows: [[Int32]], labels: [[Int32]]?, sequenceLengths: [[Int]]?, path: String) {
        (self.rows, self.labels, self.sequenceLengths, self.path) = (rows, labels, sequenceLengths, path)
    }

    /// Reads `path` by its extension (`.npy`, else JSONL); `text` gives the format of lines of text,
    /// called only if there is one (so token data never needs a tokenizer).
    public init(contentsOf path: String, vocabularySize: Int, maxLength: Int? = nil, text: () throws -> TextFormat? = { nil }) throws {
        if path.hasSuffix(".npy") {
            let rows = try MappedBytes(contentsOf: path).withBytes { try Self.parseNumPy($0, path: path) }
            try self.init(rows: rows, path: path, vocabularySize: vocabularySize, maxLength: maxLength)
        } else {
            let (rows, labels) = try MappedBytes(contentsOf: path).withBytes { try Self.parseJSONLines($0, path: path, text: text) }
            try self.init(rows: rows, labels: labels, path: path, vocabularySize: vocabularySize, maxLength: maxLength)
        }
    }

    /// Fails on the first value of `rows` outside `0..<vocabularySize` (other than `ignored`),
    /// naming its row and position.
    static func checkVocabulary(_ rows: [ArraySlice<Int32>], _ what: String, vocabularySize: Int, ignoring ignored: Int32? = nil,
                                context: [(String, String)] = []) throws {
        for (r, row) in rows.enumerated() {
            guard let bad = row.firstIndex(where: { ($0 < 0 || Int($0) >= vocabularySize) && $0 != ignored }) else { continue }
            let position = bad - row.startIndex
            throw LowRankError(.invalidArgument, "\(what) \(row[bad]) at row \(r), position \(position) is outside the vocabulary of \(vocabularySize)"
                               + (ignored.map { " (and is not the ignored label \($0))" } ?? ""),
                               context: context + [("row", "\(r)"), ("position", "\(position)")])
        }
    }

    /// Tokens the loss predicts over all rows: in each sequence, those after its first trained on.
    public var predictedTokens: Int {
        rows.indices.reduce(0) { total, r in
            var start = 0
            return total + (sequenceLengths?[r] ?? [rows[r].count]).reduce(0) { sum, length in
                defer { start += length }
                return sum + (labels.map { $0[r][(start + 1)..<(start + length)].count { $0 != CausalLMPlan.ignoredLabel } } ?? length - 1)
            }
        }
    }

    /// The rows of a JSONL file and their labels: nil when no line has any (every token trained on).
    public static func parseJSONLines(_ bytes: UnsafeRawBufferPointer, path: String,
                                      text textFormat: () throws -> TextFormat? = { nil }) throws -> (rows: [[Int32]], labels: [[Int32]]?) {
        var rows: [[Int32]] = [], labels: [[Int32]?] = []
        var loaded: TextFormat??
        let text = {
            if loaded == nil { loaded = .some(try textFormat()) }
            return loaded!
        }
        for (number, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { continue }
            let context = [("file", path), ("line", "\(number + 1)")]
            do {
                let json: JSON
                do { json = try JSON.parse(line) } catch let e as LowRankError {
                    throw LowRankError(.fileFormat, "not JSON: \(e.message)")
                }
                let (ids, lineLabels) = try example(json, text: text)
                rows.append(ids)
                labels.append(lineLabels)
            } catch let e as LowRankError {
                throw LowRankError(e.kind, "line \(number + 1): \(e.message)", context: context + e.context)
            }
        }
        let anyLabels = labels.contains { $0 != nil }
        return (rows, anyLabels ? zip(rows, labels).map { $1 ?? $0 } : nil)
    }

    /// One JSONL line's ids and labels (nil: every token trained on); `text` gives the format of
    /// the text forms, called only for one of them.
    public static func example(_ json: JSON, text: () throws -> TextFormat?) throws -> ([Int32], [Int32]?) {
        func integers(_ field: String) throws -> [Int32]? {
            guard let value = json[field] else { return nil }
            guard let list = value.array else { throw LowRankError(.fileFormat, "\"\(field)\" must be a list of integers") }
            return try list.map { v in
                guard let i = v.int, let id = Int32(exactly: i) else { throw LowRankError(.fileFormat, "\(v.serialized) in \"\(field)\" is not a token id") }
                return id
            }
        }
        if let ids = try integers("input_ids") {
            let labels = try integers("labels")
            if let labels, labels.count != ids.count {
                throw LowRankError(.fileFormat, "\"labels\" holds \(labels.count) values and \"input_ids\" \(ids.count): they must match")
            }
            return (ids, labels)
        }
        guard TextFormat.fields.contains(where: { json[$0] != nil }) else { throw TextFormat.unknownForm }
        guard let text = try text() else { throw LowRankError(.fileFormat, "text needs a tokenizer, and the model folder has no tokenizer.json") }
        let (ids, labels) = try text.tokenize(json)
        return (ids, labels)
    }

    /// NumPy's format 1.0–3.0: magic, version, a little-endian header length, a Python-dict header
    /// (`descr`, `fortran_order`, `shape`), then the data in C order. The shape must be two
    /// non-negative integers whose size matches the data exactly, rows of at least 2 tokens.
    public static func parseNumPy(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [[Int32]] {
        func bad(_ message: String) -> LowRankError { LowRankError(.fileFormat, message, context: [("file", path)]) }
        guard bytes.count >= 10, bytes[0..<6].elementsEqual([0x93] + Array("NUMPY".utf8)) else { throw bad("not a .npy file (bad magic)") }
        let major = bytes[6]
        guard (1...3).contains(major) else { throw bad(".npy format version \(major).\(bytes[7]) is not one of 1.0 to 3.0") }
        let (lengthBytes, start) = major == 1 ? (2, 10) : (4, 12)
        guard bytes.count >= start else { throw bad("truncated header") }
        let headerLength = (0..<lengthBytes).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        guard start + headerLength <= bytes.count else { throw bad("truncated header") }
        let header = String(decoding: bytes[start..<(start + headerLength)], as: UTF8.self)
        func field(_ name: String) -> String? {
            guard let r = header.firstRange(of: "'\(name)':") else { return nil }
            return String(header[r.upperBound...].drop { $0 == " " })
        }
        guard let descr = field("descr") else { throw bad("the header has no descr") }
        let width: Int
        if descr.hasPrefix("'<i8'") { width = 8 } else if descr.hasPrefix("'<i4'") { width = 4 } else {
            throw bad("token ids must be little-endian int32 or int64 ('<i4' or '<i8'), got \(descr.prefix(while: { $0 != "," }))")
        }
        guard field("fortran_order")?.hasPrefix("False") == true else { throw bad("Fortran-ordered arrays are not supported") }
        guard let shapeText = field("shape"), shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else { throw bad("the header has no shape") }
        let tuple = shapeText[...close]
        var parts = tuple.dropFirst().dropLast().split(separator: ",", omittingEmptySubsequences: false).map { $0.filter { $0 != " " } }
        if parts.count > 1, parts.last == "" { parts.removeLast() }
        let dims = parts.map { $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) ? Int($0) : nil }
        guard dims.count == 2, let n = dims[0], let length = dims[1] else {
            throw bad("token ids must be a 2-D array [N, seq] of non-negative sizes, got shape \(tuple)")
        }
        guard length >= 2 else { throw bad("rows of \(length) tokens predict nothing; token rows need at least 2, got shape \(tuple)") }
        let data = start + headerLength
        guard let size = CheckedSize.product([n, length, width]), bytes.count - data == size else {
            throw bad("the data holds \(bytes.count - data) bytes, not the size of shape \(tuple) in \(width)-byte ids")
        }
        return try (0..<n).map { r in
            try (0..<length).map { c in
                let offset = data + (r * length + c) * width
                let value = (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
                let signed = width == 8 ? Int64(bitPattern: value) : Int64(Int32(truncatingIfNeeded: value))
                guard let id = Int32(exactly: signed) else { throw bad("token id \(signed) at row \(r), position \(c) does not fit 32 bits") }
                return id
            }
        }
    }

    /// The rows at `indices` as one batch, padded to the longest.
    public func batch(_ indices: some Collection<Int>) -> TokenBatch {
        TokenBatch(indices.map { rows[$0] }, labels: labels.map { labels in indices.map { labels[$0] } },
                   sequenceLengths: sequenceLengths.map { lengths in indices.map { lengths[$0] } })
    }
}

/// Rows of a batch laid end to end, each padded to the batch's longest, and the labels the loss
/// reads: each position's next token, as transformers shifts them, with padding and each row's
/// last position ignored.
public struct TokenBatch: Sendable {
    public let rows: Int
    public let sequence: Int
    public let inputIDs: [Int32]
    public let labels: [Int32]
    /// Positions whose next token is predicted.
    public let predictedTokens: Int

    /// Each position's sequence start, as a row of T (`AttentionOptions.packed`), when rows hold
    /// several sequences; nil: each row is one.
    public let sequenceStarts: [Int32]?

    /// `labels`, one per row when given, are unshifted as `rows` (−100: not trained on).
    /// `sequenceLengths`, one list per row when given, splits each row into packed sequences: a
    /// sequence's last position predicts nothing (not the next sequence's first token), and each
    /// position's sequence start is recorded; a row's padding continues its last sequence.
    public init(_ rows: [[Int32]], labels rowLabels: [[Int32]]? = nil, sequenceLengths: [[Int]]? = nil) {
        let sequence = rows.map(\.count).max() ?? 0
        var ids: [Int32] = [], labels: [Int32] = [], starts: [Int32] = []
        for (r, row) in rows.enumerated() {
            let targets = rowLabels?[r] ?? row
            // Where each position's sequence ends (exclusive) and starts, within the row.
            var ends = [Int](repeating: row.count, count: sequence), firsts = [Int](repeating: 0, count: sequence)
            if let lengths = sequenceLengths?[r] {
                var start = 0
                for length in lengths {
                    for i in start..<(start + length) { (ends[i], firsts[i]) = (start + length, start) }
                    start += length
                }
                for i in start..<sequence { (ends[i], firsts[i]) = (sequence, firsts[max(start - 1, 0)]) }
            }
            for i in 0..<sequence {
                ids.append(i < row.count ? row[i] : 0)
                labels.append(i + 1 < ends[i] && i + 1 < row.count ? targets[i + 1] : CausalLMPlan.ignoredLabel)
                starts.append(Int32(r * sequence + firsts[i]))
            }
        }
        self.rows = rows.count
        self.sequence = sequence
        inputIDs = ids
        self.labels = labels
        sequenceStarts = sequenceLengths == nil ? nil : starts
        predictedTokens = labels.count { $0 != CausalLMPlan.ignoredLabel }
    }

    /// Each position's place in its sequence, RoPE's position: restarting at each packed sequence.
    public var positions: [Int32] {
        (0..<rows * sequence).map { i in Int32(i) - (sequenceStarts?[i] ?? Int32(i / sequence * sequence)) }
    }

    /// A batch as a training loop in Python holds it: `rows × sequence` ids in row order, and
    /// optionally labels as transformers takes them, unshifted (the loss at position i predicts
    /// `labels[i + 1]`), with −100 where nothing is predicted: right padding is marked that way.
    /// Without labels, every next token is predicted. Every id and label is checked against the
    /// vocabulary, and the first bad one is named by row and position. `positionIDs`, as
    /// transformers takes packed rows without padding (`DataCollatorWithFlattening`), make the rows
    /// packed: each sequence's positions count up from 0, and a position 0 begins a new sequence,
    /// whose first token the one before it does not predict; a row begins at 0.
    public init(inputIDs: [Int32], labels: [Int32]? = nil, positionIDs: [Int32]? = nil, rows: Int, sequence: Int, vocabularySize: Int) throws {
        guard rows >= 1, sequence >= 2 else {
            throw LowRankError(.shapeMismatch, "a batch needs at least one row of at least 2 tokens, got \(rows) × \(sequence)")
        }
        let (count, overflow) = rows.multipliedReportingOverflow(by: sequence)
        guard !overflow, inputIDs.count == count else {
            throw LowRankError(.shapeMismatch, "\(inputIDs.count) token ids do not make \(rows) rows of \(sequence)")
        }
        let source = labels ?? inputIDs
        guard source.count == count else {
            throw LowRankError(.shapeMismatch, "the labels hold \(source.count) values, the token ids \(count): they must have the same shape")
        }
        let rowsOf = { (values: [Int32]) in stride(from: 0, to: count, by: sequence).map { values[$0..<($0 + sequence)] } }
        try TokenDataset.checkVocabulary(rowsOf(inputIDs), "token id", vocabularySize: vocabularySize)
        if let labels { try TokenDataset.checkVocabulary(rowsOf(labels), "label", vocabularySize: vocabularySize, ignoring: CausalLMPlan.ignoredLabel) }
        var starts: [Int32]?
        if let positionIDs {
            guard positionIDs.count == count else {
                throw LowRankError(.shapeMismatch, "the position ids hold \(positionIDs.count) values, the token ids \(count): they must have the same shape")
            }
            starts = []
            for i in 0..<count {
                let position = positionIDs[i], begins = i % sequence == 0
                guard position == 0 || (!begins && position == positionIDs[i - 1] + 1) else {
                    let want = begins ? "0 (a row begins a sequence)" : "0 (a new sequence) or \(positionIDs[i - 1] + 1)"
                    throw LowRankError(.invalidArgument, "position id \(position) at row \(i / sequence), position \(i % sequence) must be \(want)",
                                       context: [("row", "\(i / sequence)"), ("position", "\(i % sequence)")])
                }
                starts!.append(position == 0 ? Int32(i) : starts![i - 1])
            }
        }
        let shifted = (0..<count).map { i in
            i % sequence + 1 < sequence && positionIDs?[i + 1] != 0 ? source[i + 1] : CausalLMPlan.ignoredLabel
        }
        self.rows = rows
        self.sequence = sequence
        self.inputIDs = inputIDs
        self.labels = shifted
        sequenceStarts = starts
        predictedTokens = shifted.count { $0 != CausalLMPlan.ignoredLabel }
        guard predictedTokens > 0 else { throw LowRankError(.invalidArgument, "every label is ignored (−100): the batch predicts nothing") }
    }
}
