import LowRank

extension TargetPattern {
    indirect enum Node {
        case empty
        case scalar(ScalarClass)
        case concat([Node])
        case alternation([Node])
        case repetition(Node, min: Int, max: Int?)
        case assertion(Assertion)
        case look(Node, behind: Bool, negated: Bool)
    }

    static func error(_ source: String, _ message: String) -> LowRankError {
        LowRankError(.invalidArgument, "target_modules pattern \(JSON.string(source).serialized): \(message)", context: [("field", "target_modules")])
    }

    /// Python's `re` syntax, recursive descent; every error names the pattern and the offset.
    struct Parser {
        let pattern: [Unicode.Scalar]
        let source: String
        var index = 0

        init(_ source: String) {
            (self.source, pattern) = (source, Array(source.unicodeScalars))
        }

        func error(_ message: String) -> LowRankError { TargetPattern.error(source, "\(message) at offset \(index)") }

        var peek: Unicode.Scalar? { index < pattern.count ? pattern[index] : nil }

        mutating func take(_ s: String) -> Bool {
            let scalars = Array(s.unicodeScalars)
            guard index + scalars.count <= pattern.count, Array(pattern[index..<index + scalars.count]) == scalars else { return false }
            index += scalars.count
            return true
        }

        mutating func parseAll() throws -> Node {
            let node = try alternation(depth: 0)
            guard index == pattern.count else { throw error("unbalanced parenthesis") }
            return node
        }

        mutating func alternation(depth: Int) throws -> Node {
            guard depth < 100 else { throw error("groups nested too deeply") }
            var branches = [try concatenation(depth: depth)]
            while take("|") { branches.append(try concatenation(depth: depth)) }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func concatenation(depth: Int) throws -> Node {
            var items: [Node] = []
            while let c = peek, c != "|", c != ")" { items.append(try repeated(depth: depth)) }
            return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concat(items)
        }

        mutating func repeated(depth: Int) throws -> Node {
            var node = try atom(depth: depth)
            var quantified = false
            while let bounds = try quantifier() {
                if quantified { throw error("multiple repeat") }
                if case .assertion = node { throw error("nothing to repeat") }
                node = .repetition(node, min: bounds.min, max: bounds.max)
                quantified = true
                if take("+") { throw error("possessive quantifiers are not supported (they change what matches)") }
                _ = take("?")  // lazy: the same full match
            }
            return node
        }

        /// `* + ? {m} {m,} {,n} {m,n}`; a `{` that starts none of these is a literal, as in Python.
        mutating func quantifier() throws -> (min: Int, max: Int?)? {
            if take("*") { return (0, nil) }
            if take("+") { return (1, nil) }
            if take("?") { return (0, 1) }
            guard peek == "{" else { return nil }
            let start = index
            index += 1
            let low = number(), comma = take(","), high = comma ? number() : low
            guard take("}"), low != nil || comma else { index = start; return nil }
            let min = low ?? 0
            guard min <= TargetPattern.maxProgramSize, (high ?? 0) <= TargetPattern.maxProgramSize else {
                throw error("a repeat count above \(TargetPattern.maxProgramSize) is refused")
            }
            if let high, high < min { throw error("min repeat greater than max repeat") }
            return (min, high)
        }

        mutating func number() -> Int? {
            var digits = ""
            while let c = peek, ("0"..."9").contains(c), digits.count < 9 { digits.unicodeScalars.append(c); index += 1 }
            return Int(digits)
        }

        mutating func atom(depth: Int) throws -> Node {
            guard let c = peek else { throw error("unexpected end") }
            index += 1
            switch c {
            case "(": return try group(depth: depth)
            case "[": return .scalar(try characterClass())
            case ".": return .scalar(.dot)
            case "^": return .assertion(.start)
            case "$": return .assertion(.end)
            case "*", "+", "?": throw error("nothing to repeat")
            case "\\": return try escape(inClass: false)
            default: return .scalar(.init(items: [([c.value...c.value], false)]))
            }
        }

        mutating func group(depth: Int) throws -> Node {
            var look: (behind: Bool, negated: Bool)?
            if take("?") {
                if take(":") {
                } else if take("P<") {
                    while peek != nil, peek != ">" { index += 1 }
                    guard take(">") else { throw error("unterminated group name") }
                } else if take("=") { look = (false, false)
                } else if take("!") { look = (false, true)
                } else if take("<=") { look = (true, false)
                } else if take("<!") { look = (true, true)
                } else if take("#") {
                    while peek != nil, peek != ")" { index += 1 }
                    guard take(")") else { throw error("missing ), unterminated comment") }
                    return .empty
                } else if take("P=") || peek == "(" {
                    throw error("backreferences and conditionals need backtracking and are not supported")
                } else {
                    throw error("inline flags and other (? extensions are not supported")
                }
            }
            let body = try alternation(depth: depth + 1)
            guard take(")") else { throw error("missing ), unterminated subpattern") }
            return look.map { .look(body, behind: $0.behind, negated: $0.negated) } ?? body
        }

        mutating func characterClass() throws -> ScalarClass {
            var result = ScalarClass(items: [], negated: take("^"))
            var first = true
            while true {
                guard let c = peek else { throw error("unterminated character set") }
                if c == "]", !first { index += 1; return result }
                first = false
                index += 1
                var low = c.value
                if c == "\\" {
                    guard case .scalar(let escaped) = try escape(inClass: true) else { throw error("bad escape in a character set") }
                    guard escaped.items.count == 1, !escaped.items[0].negated, escaped.items[0].ranges.count == 1,
                          escaped.items[0].ranges[0].count == 1 else { result.items += escaped.items; continue }
                    low = escaped.items[0].ranges[0].lowerBound
                }
                guard peek == "-", index + 1 < pattern.count, pattern[index + 1] != "]" else {
                    result.items.append(([low...low], false))
                    continue
                }
                index += 1
                var high = pattern[index].value
                index += 1
                if high == UInt32(UInt8(ascii: "\\")) {
                    guard case .scalar(let escaped) = try escape(inClass: true), escaped.items.count == 1, escaped.items[0].ranges.count == 1,
                          escaped.items[0].ranges[0].count == 1 else { throw error("bad character range") }
                    high = escaped.items[0].ranges[0].lowerBound
                }
                guard low <= high else { throw error("bad character range") }
                result.items.append(([low...high], false))
            }
        }

        /// After a backslash: a class (`\d`), an assertion (`\b`, outside classes), a control
        /// character, or punctuation taken literally; Python's other letter escapes are errors there too.
        mutating func escape(inClass: Bool) throws -> Node {
            guard let c = peek else { throw error("bad escape (end of pattern)") }
            index += 1
            let literal = { (v: UInt32) in Node.scalar(.init(items: [([v...v], false)])) }
            switch c {
            // Negated on the item, not the class, so that `[^\W\d]` takes it as one of its items.
            case "d", "D": return .scalar(.init(items: [(ScalarClass.digit.items[0].ranges, c == "D")]))
            case "w", "W": return .scalar(.init(items: [(ScalarClass.word.items[0].ranges, c == "W")]))
            case "s", "S": return .scalar(.init(items: [(ScalarClass.space.items[0].ranges, c == "S")]))
            case "n": return literal(0x0A)
            case "t": return literal(0x09)
            case "r": return literal(0x0D)
            case "f": return literal(0x0C)
            case "v": return literal(0x0B)
            case "b" where inClass: return literal(0x08)
            case "b", "B": return .assertion(.wordBoundary(c == "B"))
            case "A" where !inClass: return .assertion(.start)
            case "Z" where !inClass: return .assertion(.textEnd)
            case "0"..."9": throw error("backreferences and octal escapes are not supported")
            case _ where c.properties.isAlphabetic && c.isASCII: throw error("bad escape \\\(c)")
            default: return literal(c.value)
            }
        }
    }

    /// Node to instructions, counting every instruction and every step against `maxProgramSize`.
    struct Compiler {
        let source: String
        var programs: [[Instruction]] = []
        var finished = 0, steps = 0

        mutating func compileProgram(_ node: Node, as index: Int) throws {
            while programs.count <= index { programs.append([]) }
            var code: [Instruction] = []
            try emit(node, into: &code)
            code.append(.match)
            finished += code.count
            programs[index] = code
        }

        private mutating func emit(_ node: Node, into code: inout [Instruction]) throws {
            steps += 1
            guard finished + code.count < TargetPattern.maxProgramSize, steps < 4 * TargetPattern.maxProgramSize else {
                throw TargetPattern.error(source, "beyond \(TargetPattern.maxProgramSize) instructions once its repeats are expanded")
            }
            switch node {
            case .empty: break
            case .scalar(let c): code.append(.scalar(c))
            case .assertion(let a): code.append(.assert(a))
            case .concat(let nodes): for n in nodes { try emit(n, into: &code) }
            case .alternation(let nodes):
                var exits: [Int] = []
                for n in nodes.dropLast() {
                    let split = code.count
                    code.append(.jump(0))
                    try emit(n, into: &code)
                    exits.append(code.count)
                    code.append(.jump(0))
                    code[split] = .split(split + 1, code.count)
                }
                try emit(nodes[nodes.count - 1], into: &code)
                for e in exits { code[e] = .jump(code.count) }
            case .repetition(let n, let min, let max):
                for _ in 0..<min { try emit(n, into: &code) }
                if let max {
                    var splits: [Int] = []
                    for _ in min..<max {
                        splits.append(code.count)
                        code.append(.jump(0))
                        try emit(n, into: &code)
                    }
                    for s in splits { code[s] = .split(s + 1, code.count) }
                } else {
                    let loop = code.count
                    code.append(.jump(0))
                    try emit(n, into: &code)
                    code.append(.jump(loop))
                    code[loop] = .split(loop + 1, code.count)
                }
            case .look(let body, let behind, let negated):
                let index = programs.count
                try compileProgram(body, as: index)
                code.append(.assert(.look(program: index, behind: behind, negated: negated)))
            }
        }
    }
}
