/// A hash table from byte strings to ids. Tokens are compared byte for byte: a `Dictionary` keyed by
/// `String` would treat canonically equivalent tokens ("é" and "e\u{301}") as one key, which the
/// `tokenizers` library does not.
struct ByteKeyTable: Sendable {
    private var keyBytes: [UInt8] = []
    private var keyStarts: [Int] = [0]
    private var values: [Int32] = []
    /// Entry index + 1 per slot; 0 is empty.
    private var slots: [Int32]
    private var mask: Int

    init(expectedCount: Int) {
        var size = 16
        while size < expectedCount * 2 { size <<= 1 }
        slots = Array(repeating: 0, count: size)
        mask = size - 1
    }

    var count: Int { values.count }

    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    private func keyEquals(_ entry: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = keyStarts[entry], end = keyStarts[entry + 1]
        guard end - start == key.count else { return false }
        return keyBytes.withUnsafeBufferPointer { all in
            for i in 0..<key.count where all[start + i] != key[i] { return false }
            return true
        }
    }

    /// The slot holding `key`, or the empty slot where it would go.
    private func slot(for key: UnsafeBufferPointer<UInt8>) -> Int {
        var i = Self.hash(key) & mask
        while true {
            let entry = Int(slots[i])
            if entry == 0 || keyEquals(entry - 1, key) { return i }
            i = (i + 1) & mask
        }
    }

    func value(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let entry = Int(slots[slot(for: key)])
        return entry == 0 ? nil : values[entry - 1]
    }

    func value(_ key: some Collection<UInt8>) -> Int32? {
        if let found = key.withContiguousStorageIfAvailable({ value($0) }) { return found }
        return Array(key).withUnsafeBufferPointer { value($0) }
    }

    /// Sets the value of `key`; a later insert of the same key wins, as in a Rust `HashMap` built from a list.
    mutating func insert(_ key: [UInt8], _ value: Int32) {
        key.withUnsafeBufferPointer { key in
            let i = slot(for: key)
            if slots[i] != 0 { values[Int(slots[i]) - 1] = value; return }
            keyBytes.append(contentsOf: key)
            keyStarts.append(keyBytes.count)
            values.append(value)
            slots[i] = Int32(values.count)
        }
        if values.count * 2 > slots.count { grow() }
    }

    private mutating func grow() {
        slots = Array(repeating: 0, count: slots.count * 2)
        mask = slots.count - 1
        for entry in 0..<values.count {
            let start = keyStarts[entry], end = keyStarts[entry + 1]
            let i = keyBytes.withUnsafeBufferPointer { slot(for: UnsafeBufferPointer(rebasing: $0[start..<end])) }
            slots[i] = Int32(entry + 1)
        }
    }
}
