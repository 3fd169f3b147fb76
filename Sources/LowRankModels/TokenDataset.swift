import Glibc
import LowRank

/// Rows of token ids to train or evaluate on, from JSONL (one `{"input_ids": [...]}` per line) or a
/// NumPy `.npy` array of int32 or int64 `[N, seq]`. Every id is checked against the vocabulary when
/// the file is read, naming the file, row and position of the first bad one.
public struct TokenDataset: Sendable {
    public let rows: [[Int32]]
    public let path: String

    public init(rows: [[Int32]], path: String = "<memory>", vocabularySize: Int, maxLength: Int? = nil) throws {
        if let maxLength, maxLength < 2 {
            throw LowRankError(.invalidArgument, "the sequence length must be at least 2 (a token and the next one it predicts), got \(maxLength)",
                               context: [("file", path), ("sequence length", "\(maxLength)")])
        }
        try Self.checkVocabulary(rows.map { $0[...] }, "token id", vocabularySize: vocabularySize, context: [("file", path)])
        // A row longer than the sequence length becomes consecutive windows of it, so no token is dropped.
        let windows = maxLength.map { length in
            rows.flatMap { row in stride(from: 0, to: row.count, by: length).map { Array(row[$0..<min($0 + length, row.count)]) } }
        } ?? rows
        self.rows = windows.filter { $0.count >= 2 }
        self.path = path
        guard !self.rows.isEmpty else {
            throw LowRankError(.invalidArgument, "the data has no row of at least 2 tokens, so nothing to predict", context: [("file", path)])
        }
    }

    /// Reads `path` by its extension (`.npy`, else JSONL).
    public init(contentsOf path: String, vocabularySize: Int, maxLength: Int? = nil) throws {
        let rows = try MappedBytes(contentsOf: path).withBytes { bytes in
            path.hasSuffix(".npy") ? try Self.parseNumPy(bytes, path: path) : try Self.parseJSONLines(bytes, path: path)
        }
        try self.init(rows: rows, path: path, vocabularySize: vocabularySize, maxLength: maxLength)
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

    /// Tokens the loss predicts over all rows.
    public var predictedTokens: Int { rows.reduce(0) { $0 + $1.count - 1 } }

    public static func parseJSONLines(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [[Int32]] {
        var rows: [[Int32]] = []
        for (number, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { continue }
            let context = [("file", path), ("line", "\(number + 1)")]
            let json: JSON
            do { json = try JSON.parse(line) } catch let e as LowRankError {
                throw LowRankError(.fileFormat, "line \(number + 1) is not JSON: \(e.message)", context: context)
            }
            guard let list = json["input_ids"]?.array else {
                throw LowRankError(.fileFormat, "line \(number + 1) has no \"input_ids\" list", context: context)
            }
            rows.append(try list.map { v in
                guard let i = v.int, let id = Int32(exactly: i) else {
                    throw LowRankError(.fileFormat, "line \(number + 1): \(v.serialized) is not a token id", context: context)
                }
                return id
            })
        }
        return rows
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
        TokenBatch(indices.map { rows[$0] })
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

    public init(_ rows: [[Int32]]) {
        let sequence = rows.map(\.count).max() ?? 0
        var ids: [Int32] = [], labels: [Int32] = [], predicted = 0
        for row in rows {
            for i in 0..<sequence {
                ids.append(i < row.count ? row[i] : 0)
                labels.append(i + 1 < row.count ? row[i + 1] : CausalLMPlan.ignoredLabel)
            }
            predicted += max(0, row.count - 1)
        }
        self.rows = rows.count
        self.sequence = sequence
        inputIDs = ids
        self.labels = labels
        predictedTokens = predicted
    }

    /// A batch as a training loop in Python holds it: `rows × sequence` ids in row order, and
    /// optionally labels as transformers takes them, unshifted (the loss at position i predicts
    /// `labels[i + 1]`), with −100 where nothing is predicted: right padding is marked that way.
    /// Without labels, every next token is predicted. Every id and label is checked against the
    /// vocabulary, and the first bad one is named by row and position.
    public init(inputIDs: [Int32], labels: [Int32]? = nil, rows: Int, sequence: Int, vocabularySize: Int) throws {
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
        let shifted = (0..<count).map { i in i % sequence + 1 < sequence ? source[i + 1] : CausalLMPlan.ignoredLabel }
        self.rows = rows
        self.sequence = sequence
        self.inputIDs = inputIDs
        self.labels = shifted
        predictedTokens = shifted.count { $0 != CausalLMPlan.ignoredLabel }
        guard predictedTokens > 0 else { throw LowRankError(.invalidArgument, "every label is ignored (−100): the batch predicts nothing") }
    }
}
