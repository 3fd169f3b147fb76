import LowRank

extension TokenDataset {
    /// The rows packed into rows of at most `length` tokens (`--pack`), best-fit decreasing as TRL's
    /// `pack_dataset(strategy="bfd")` packs: longest first (ties in data order), each into the
    /// row with the least room that holds it (among rows with the same room, the one that came to
    /// it first), else into a new row; a row's sequences in the order they were placed. Rows longer than `length` are refused: the
    /// data is cut into windows of the sequence length first (where TRL truncates). Each packed row
    /// records its sequences' lengths, so attention, positions and labels stop at their bounds.
    public func packed(into length: Int) throws -> TokenDataset {
        guard sequenceLengths == nil else { throw LowRankError(.invalidArgument, "the data is packed already", context: [("file", path)]) }
        if let r = rows.indices.first(where: { rows[$0].count > length }) {
            throw LowRankError(.invalidArgument, "row \(r) holds \(rows[r].count) tokens, more than the packed rows' \(length)",
                               context: [("file", path), ("row", "\(r)")])
        }
        // Rows by the room they have left, each bucket in the order rows came to it: the best fit
        // for n tokens is the first row of the first non-empty bucket from n up.
        var bins: [[Int]] = [], byRoom = [[Int]](repeating: [], count: length + 1)
        for r in rows.indices.sorted(by: { (rows[$0].count, $1) > (rows[$1].count, $0) }) {
            let n = rows[r].count
            let bin: Int
            if let room = (n...length).first(where: { !byRoom[$0].isEmpty }) {
                bin = byRoom[room].removeFirst()
                bins[bin].append(r)
            } else {
                bin = bins.count
                bins.append([r])
            }
            byRoom[length - bins[bin].reduce(0) { $0 + rows[$1].count }].append(bin)
        }
        return TokenDataset(checkedRows: bins.map { $0.flatMap { rows[$0] } },
                            labels: labels.map { labels in bins.map { $0.flatMap { labels[$0] } } },
                            sequenceLengths: bins.map { $0.map { rows[$0].count } }, path: path)
    }

    /// The positions batches of `batchSize` rows in data order run, each batch padded to its
    /// longest row as `TokenBatch` pads it, and how many of them hold a token (the rest is padding).
    public func positions(batchSize: Int) -> (run: Int, tokens: Int) {
        stride(from: 0, to: rows.count, by: batchSize).reduce(into: (0, 0)) { total, start in
            let batch = rows[start..<min(start + batchSize, rows.count)]
            total.run += batch.count * (batch.map(\.count).max() ?? 0)
            total.tokens += batch.reduce(0) { $0 + $1.count }
        }
    }
}
