/// A token of a template, as jinja2's lexer produces it.
struct JinjaToken {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String), string(String), integer(Int), float(Double), op(String)
        case end
    }
    var kind: Kind
    var line: Int
}

/// jinja2's lexer with transformers' settings: `trim_blocks` and `lstrip_blocks` on,
/// `keep_trailing_newline` off, `{%- -%} {{- -}} {#- -#}` and `+` whitespace control, `{% raw %}`.
struct JinjaLexer {
    private let source: [Unicode.Scalar]
    private var position = 0
    private var line = 1
    private var tokens: [JinjaToken] = []
    /// jinja2 lstrips a tag with no newline before it only where the previous tag ended a line.
    private var lineStarting = true

    static func tokenize(_ text: String) throws -> [JinjaToken] {
        var lexer = JinjaLexer(source: normalizedNewlines(text))
        try lexer.run()
        return lexer.tokens
    }

    private init(source: [Unicode.Scalar]) { self.source = source }

    /// `\r\n` and `\r` become `\n`, and one trailing newline is dropped, as jinja2 does before lexing.
    private static func normalizedNewlines(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        var previousCR = false
        for scalar in text.unicodeScalars {
            if scalar == "\n", previousCR { previousCR = false; continue }
            previousCR = scalar == "\r"
            out.append(scalar == "\r" ? "\n" : scalar)
        }
        if out.last == "\n" { out.removeLast() }
        return out
    }

    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace || (0x1C...0x1F).contains(s.value) }

    private func at(_ i: Int) -> Unicode.Scalar? { i < source.count ? source[i] : nil }

    private func matches(_ literal: String, at i: Int) -> Bool {
        var j = i
        for scalar in literal.unicodeScalars {
            guard at(j) == scalar else { return false }
            j += 1
        }
        return true
    }

    private mutating func advance(to end: Int) {
        while position < end {
            if source[position] == "\n" { line += 1 }
            position += 1
        }
    }

    private mutating func skipSpaces() {
        var end = position
        while let s = at(end), JinjaLexer.isSpace(s) { end += 1 }
        advance(to: end)
    }

    private func failure(_ message: String) -> JinjaFailure { .message("\(message) (line \(line))") }

    private mutating func emitText(_ scalars: ArraySlice<Unicode.Scalar>) {
        guard !scalars.isEmpty else { return }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        tokens.append(JinjaToken(kind: .text(text), line: line))
    }

    /// The text before a tag, less the whitespace that the tag's sign or `lstrip_blocks` removes.
    private func strippedText(_ start: Int, _ end: Int, sign: Unicode.Scalar?, lstrips: Bool) -> ArraySlice<Unicode.Scalar> {
        var text = source[start..<end]
        if sign == "-" {
            while let last = text.last, JinjaLexer.isSpace(last) { text.removeLast() }
        } else if sign != "+", lstrips {
            let lineStart = (text.lastIndex(of: "\n") ?? text.startIndex - 1) + 1
            let tail = text[lineStart...]
            if (lineStart > text.startIndex || lineStarting), !tail.isEmpty, tail.allSatisfy(JinjaLexer.isSpace) {
                text = text[..<lineStart]
            }
        }
        return text
    }

    private mutating func run() throws {
        while position < source.count {
            guard let start = nextTagStart() else {
                emitText(source[position...])
                advance(to: source.count)
                break
            }
            let opener = source[start + 1]
            let sign = at(start + 2).flatMap { $0 == "-" || $0 == "+" ? $0 : nil }
            let rawEnd = opener == "%" ? rawBlockEnd(after: start) : nil
            emitText(strippedText(position, start, sign: sign, lstrips: opener != "{"))
            advance(to: start + 2 + (sign == nil ? 0 : 1))
            if let rawEnd {
                advance(to: rawEnd)
                try raw()
            } else if opener == "#" {
                try comment()
            } else {
                try tag(block: opener == "%")
            }
        }
        tokens.append(JinjaToken(kind: .end, line: line))
    }

    /// The first `{{`, `{%` or `{#` from the current position.
    private func nextTagStart() -> Int? {
        var i = position
        while i + 1 < source.count {
            if source[i] == "{", source[i + 1] == "{" || source[i + 1] == "%" || source[i + 1] == "#" { return i }
            i += 1
        }
        return nil
    }

    /// Where `{% raw %}` starting at `start` ends (after its `%}`), or nil when the tag is not `raw`.
    private func rawBlockEnd(after start: Int) -> Int? {
        var i = start + 2
        if at(i) == "-" || at(i) == "+" { i += 1 }
        while let s = at(i), JinjaLexer.isSpace(s) { i += 1 }
        guard matches("raw", at: i) else { return nil }
        i += 3
        while let s = at(i), JinjaLexer.isSpace(s) { i += 1 }
        return tagEnd(at: i, closer: "%}")
    }

    /// The end of a closing `%}`/`#}`/`}}` (with its sign) at `i`, past what it strips after itself.
    private func tagEnd(at i: Int, closer: String) -> Int? {
        if closer != "}}", at(i) == "+", matches(closer, at: i + 1) { return i + 3 }
        if at(i) == "-", matches(closer, at: i + 1) {
            var j = i + 3
            while let s = at(j), JinjaLexer.isSpace(s) { j += 1 }
            return j
        }
        guard matches(closer, at: i) else { return nil }
        // trim_blocks: a block or comment tag eats the newline right after it.
        return closer != "}}" && at(i + 2) == "\n" ? i + 3 : i + 2
    }

    private mutating func finishTag(at end: Int) {
        lineStarting = end > 0 && source[end - 1] == "\n"
        advance(to: end)
    }

    private mutating func comment() throws {
        var i = position
        while i < source.count {
            if let end = tagEnd(at: i, closer: "#}") {
                finishTag(at: end)
                return
            }
            i += 1
        }
        throw failure("Missing end of comment tag")
    }

    private mutating func raw() throws {
        var i = position
        while i < source.count {
            if source[i] == "{", at(i + 1) == "%" {
                var j = i + 2
                let sign = at(j) == "-" || at(j) == "+" ? at(j) : nil
                if sign != nil { j += 1 }
                while let s = at(j), JinjaLexer.isSpace(s) { j += 1 }
                if matches("endraw", at: j) {
                    j += 6
                    while let s = at(j), JinjaLexer.isSpace(s) { j += 1 }
                    if let end = tagEnd(at: j, closer: "%}") {
                        emitText(strippedText(position, i, sign: sign, lstrips: true))
                        finishTag(at: end)
                        return
                    }
                }
            }
            i += 1
        }
        throw failure("Missing end of raw directive")
    }

    private mutating func tag(block: Bool) throws {
        tokens.append(JinjaToken(kind: block ? .blockBegin : .variableBegin, line: line))
        let closer = block ? "%}" : "}}"
        var balance: [Unicode.Scalar] = []
        while true {
            skipSpaces()
            guard let scalar = at(position) else {
                throw failure("unexpected end of template, expected '\(closer)'")
            }
            if balance.isEmpty, let end = tagEnd(at: position, closer: closer) {
                tokens.append(JinjaToken(kind: block ? .blockEnd : .variableEnd, line: line))
                finishTag(at: end)
                return
            }
            if scalar.properties.numericType == .decimal, scalar.isASCII {
                try number()
            } else if scalar == "_" || scalar.properties.isAlphabetic {
                var end = position
                while let s = at(end), s == "_" || s.properties.isAlphabetic || (s.isASCII && s.properties.numericType == .decimal) { end += 1 }
                var name = ""
                name.unicodeScalars.append(contentsOf: source[position..<end])
                tokens.append(JinjaToken(kind: .name(name), line: line))
                advance(to: end)
            } else if scalar == "'" || scalar == "\"" {
                try string(quote: scalar)
            } else {
                try op(balance: &balance)
            }
        }
    }

    private static let operators = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
                                    "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"]

    private mutating func op(balance: inout [Unicode.Scalar]) throws {
        guard let op = JinjaLexer.operators.first(where: { matches($0, at: position) }) else {
            throw failure("unexpected char '\(source[position])'")
        }
        let scalar = op.unicodeScalars.first!
        switch scalar {
        case "(": balance.append(")")
        case "[": balance.append("]")
        case "{": balance.append("}")
        case ")", "]", "}":
            guard balance.last == scalar else { throw failure("unexpected '\(op)'") }
            balance.removeLast()
        default: break
        }
        tokens.append(JinjaToken(kind: .op(op), line: line))
        advance(to: position + op.unicodeScalars.count)
    }

    private func digits(from i: Int) -> Int {
        var j = i
        while let s = at(j), s.isASCII, s.properties.numericType == .decimal || (s == "_" && j > i && at(j + 1).map { $0.isASCII && $0.properties.numericType == .decimal } == true) { j += 1 }
        return j
    }

    private mutating func number() throws {
        var end = digits(from: position)
        var isFloat = false
        // After a dot (`items.0`) digits are an attribute, never the start of a float.
        let afterDot = position > 0 && source[position - 1] == "."
        if !afterDot {
            if at(end) == ".", let d = at(end + 1), d.isASCII, d.properties.numericType == .decimal {
                end = digits(from: end + 1)
                isFloat = true
            }
            if at(end) == "e" || at(end) == "E" {
                var j = end + 1
                if at(j) == "+" || at(j) == "-" { j += 1 }
                if let d = at(j), d.isASCII, d.properties.numericType == .decimal {
                    end = digits(from: j)
                    isFloat = true
                }
            }
        }
        var text = ""
        text.unicodeScalars.append(contentsOf: source[position..<end].filter { $0 != "_" })
        if isFloat {
            guard let value = Double(text) else { throw failure("bad number \(text)") }
            tokens.append(JinjaToken(kind: .float(value), line: line))
        } else {
            guard let value = Int(text) else { throw JinjaFailure.unsupported("integer literal \(text) beyond 64 bits (line \(line))") }
            tokens.append(JinjaToken(kind: .integer(value), line: line))
        }
        advance(to: end)
    }

    /// A string literal, its escapes decoded as Python's `unicode-escape` codec does.
    private mutating func string(quote: Unicode.Scalar) throws {
        let startLine = line
        var i = position + 1
        var out = String.UnicodeScalarView()
        while true {
            guard let s = at(i) else { throw failure("unterminated string") }
            if s == quote { break }
            guard s == "\\", let e = at(i + 1) else { out.append(s); i += 1; continue }
            i += 2
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "\\", "'", "\"": out.append(e)
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "\n": break
            case "x", "u", "U":
                let width = e == "x" ? 2 : e == "u" ? 4 : 8
                var hex = ""
                for k in 0..<width { if let h = at(i + k) { hex.unicodeScalars.append(h) } }
                guard hex.count == width, let code = UInt32(hex, radix: 16), let decoded = Unicode.Scalar(code) else {
                    throw failure("truncated \\\(e) escape in a string")
                }
                out.append(decoded)
                i += width
            case "0"..."7":
                var code = e.value - 48
                var count = 1
                while count < 3, let d = at(i), ("0"..."7").contains(d) { code = code * 8 + d.value - 48; i += 1; count += 1 }
                out.append(Unicode.Scalar(code)!)
            default:
                out.append("\\")
                out.append(e)
            }
        }
        tokens.append(JinjaToken(kind: .string(String(out)), line: startLine))
        advance(to: i + 1)
    }
}
