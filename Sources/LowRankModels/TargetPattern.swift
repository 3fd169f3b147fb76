import LowRank

/// A one-string `target_modules` as PEFT applies it: a Python regular expression that must match a
/// module's whole path (`re.fullmatch`). Python's engine backtracks, so `(.*)*X` takes minutes on
/// a long path; here the pattern is compiled to a nondeterministic automaton and run as a set of
/// states (Thompson's construction, Pike's VM), which answers in at most path length × program
/// size steps whatever the pattern. Lookarounds are answered by the same VM at each position
/// (once per position, remembered), so they stay polynomial too.
///
/// The syntax is Python's that module patterns use: literals and escapes, `.`, classes (`[^a-z\d]`),
/// `\d \w \s` and their negations (ASCII), groups (`(…)`, `(?:…)`, `(?P<name>…)`), alternation,
/// `* + ? {m} {m,} {m,n} {,n}` greedy or lazy (the same for a full match), `^ $ \A \Z \b \B`,
/// lookahead and lookbehind. What would need backtracking or changes the matching rules
/// (backreferences, possessive quantifiers, inline flags, conditionals) is refused by name, as is
/// a program beyond `maxProgramSize` instructions (counted repetition is expanded).
struct TargetPattern {
    static let maxProgramSize = 4096

    /// One scalar's test: any of `items` (each a set of ranges, maybe negated), the whole maybe negated.
    struct ScalarClass {
        var items: [(ranges: [ClosedRange<UInt32>], negated: Bool)]
        var negated = false

        func contains(_ c: UInt32) -> Bool {
            items.contains { item in item.ranges.contains { $0.contains(c) } != item.negated } != negated
        }
    }

    enum Assertion {
        case start, end, textEnd, wordBoundary(Bool)
        /// `(?=…)` / `(?!…)` (`behind` false) and `(?<=…)` / `(?<!…)`, with the index of the body's program.
        case look(program: Int, behind: Bool, negated: Bool)
    }

    enum Instruction {
        case scalar(ScalarClass)
        case split(Int, Int)
        case jump(Int)
        case assert(Assertion)
        case match
    }

    let source: String
    /// The pattern's program first, then one per lookaround body.
    let programs: [[Instruction]]

    init(_ source: String) throws {
        self.source = source
        var parser = Parser(source)
        let node = try parser.parseAll()
        var compiler = Compiler(source: source)
        try compiler.compileProgram(node, as: 0)
        programs = compiler.programs
    }

    /// Whether the pattern matches the whole of `text`.
    func fullMatch(_ text: String) -> Bool {
        var run = Run(programs: programs, text: text.unicodeScalars.map(\.value))
        return run.matches(program: 0, from: 0, endingAt: run.text.count)
    }

    /// One match: the text and the lookarounds already answered, by assertion and position.
    private struct Run {
        let programs: [[Instruction]]
        let text: [UInt32]
        var answered: [Int: Bool] = [:]

        /// Whether `program` matches text from `start` to exactly `end`, or to any position when `end` is nil.
        mutating func matches(program index: Int, from start: Int, endingAt end: Int?) -> Bool {
            let program = programs[index]
            var marked = [Int](repeating: -1, count: program.count)
            var current: [Int] = []
            add(0, at: start, program, &marked, &current)
            var position = start
            while !current.isEmpty {
                if current.contains(where: { if case .match = program[$0] { true } else { false } }), end == nil || end == position {
                    return true
                }
                guard position < (end ?? text.count) else { return false }
                var next: [Int] = []
                for pc in current {
                    if case .scalar(let c) = program[pc], c.contains(text[position]) { add(pc + 1, at: position + 1, program, &marked, &next) }
                }
                current = next
                position += 1
            }
            return false
        }

        /// Follows jumps, splits and assertions from `pc` at `position`, appending the states that
        /// wait for a scalar or match; each state once per position, so empty loops end.
        private mutating func add(_ pc: Int, at position: Int, _ program: [Instruction], _ marked: inout [Int], _ list: inout [Int]) {
            var stack = [pc]
            while let pc = stack.popLast() {
                guard marked[pc] != position else { continue }
                marked[pc] = position
                switch program[pc] {
                case .jump(let target): stack.append(target)
                case .split(let first, let second): stack.append(contentsOf: [second, first])
                case .assert(let assertion): if holds(assertion, at: position) { stack.append(pc + 1) }
                case .scalar, .match: list.append(pc)
                }
            }
        }

        private mutating func holds(_ assertion: Assertion, at position: Int) -> Bool {
            let text = self.text
            let isWord = { (i: Int) in i >= 0 && i < text.count && ScalarClass.word.contains(text[i]) }
            switch assertion {
            case .start: return position == 0
            // Python's `$`: the end, or just before a final newline.
            case .end: return position == text.count || (position == text.count - 1 && text[position] == 0x0A)
            case .textEnd: return position == text.count
            case .wordBoundary(let negated): return (isWord(position - 1) != isWord(position)) != negated
            case .look(let program, let behind, let negated):
                let key = program * (text.count + 1) + position
                if let known = answered[key] { return known != negated }
                let found = behind ? (0...position).contains { matches(program: program, from: $0, endingAt: position) }
                                   : matches(program: program, from: position, endingAt: nil)
                answered[key] = found
                return found != negated
            }
        }
    }
}

extension TargetPattern.ScalarClass {
    static func scalars(_ text: String) -> [ClosedRange<UInt32>] { text.unicodeScalars.map { $0.value...$0.value } }
    static let digit: Self = .init(items: [([0x30...0x39], false)])
    static let word: Self = .init(items: [([0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x5F...0x5F], false)])
    static let space: Self = .init(items: [(scalars(" \t\n\r\u{0B}\u{0C}"), false)])
    /// `.`: anything but a newline.
    static let dot: Self = .init(items: [([0x0A...0x0A], true)])
}
