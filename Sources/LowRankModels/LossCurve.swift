import Glibc
import LowRank

/// An SVG plot of training loss per step, with a moving average over the noise of single batches,
/// and the validation loss at the steps it was measured (the best one ringed).
public struct LossCurve: Sendable {
    public var losses: [Float]
    /// Validation losses by step (1-based, as `Trainer.step` after the step).
    public var validation: [(step: Int, loss: Double)]
    public var title: String

    public init(losses: [Float], validation: [(step: Int, loss: Double)] = [], title: String = "lowrank train: loss per step") {
        self.losses = losses
        self.validation = validation
        self.title = title
    }

    /// The mean of each step's window of up to `width` steps ending at it.
    static func movingAverage(_ values: [Float], width: Int) -> [Float] {
        var sum: Float = 0
        return values.indices.map { i in
            sum += values[i]
            if i >= width { sum -= values[i - width] }
            return sum / Float(min(i + 1, width))
        }
    }

    public func svg() -> String {
        let (width, height, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 50.0, 50.0)
        let (plotW, plotH) = (width - left - right, height - top - bottom)
        let finite = (losses + validation.map { Float($0.loss) }).filter(\.isFinite)
        let lo = Double(finite.min() ?? 0), hi = Double(finite.max() ?? 1)
        let (yMin, yMax) = (max(0, lo - 0.05 * (hi - lo)), hi + 0.05 * (hi - lo) + (hi == lo ? 1 : 0))
        let steps = max(losses.count, 2), window = max(1, losses.count / 20)
        func x(_ i: Int) -> Double { left + plotW * Double(i) / Double(steps - 1) }
        func y(_ v: Float) -> Double { top + plotH * (1 - (Double(v) - yMin) / (yMax - yMin)) }
        func line(_ values: [Float], _ style: String, at index: (Int) -> Int = { $0 }) -> String {
            let points = values.enumerated().filter { $0.element.isFinite }.map { formatted("%.1f,%.1f", x(index($0.offset)), y($0.element)) }
            return "<polyline fill=\"none\" \(style) points=\"\(points.joined(separator: " "))\"/>\n"
        }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="24" font-size="16">\(title)</text>
        <text x="\(left)" y="40" fill="#555">\(losses.count) steps, loss \(formatted("%.4f", losses.first ?? 0)) → \(formatted("%.4f", losses.last ?? 0)); light: each step, dark: mean of the last \(window)</text>

        """
        for k in 0...4 {
            let v = yMin + (yMax - yMin) * Double(k) / 4, py = top + plotH * (1 - Double(k) / 4)
            out += formatted("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", left, left + plotW, py, py)
            out += formatted("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n", left - 6, py + 4, v)
        }
        for k in 0...4 {
            let step = Int((Double(losses.count) * Double(k) / 4).rounded())
            out += formatted("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x(max(step - 1, 0)), top + plotH + 18, step)
        }
        out += formatted("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", left + plotW / 2, height - 10)
        out += formatted("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", left, top, plotW, plotH)
        out += line(losses, "stroke=\"#9ecae1\" stroke-width=\"1\"")
        out += line(Self.movingAverage(losses, width: window), "stroke=\"#08519c\" stroke-width=\"2\"")
        return out + validationSeries(x: { x($0 - 1) }, y: y) + "</svg>\n"
    }

    /// The validation losses as an orange line with a dot per measurement, the best ringed, and a legend.
    private func validationSeries(x: (Int) -> Double, y: (Float) -> Double) -> String {
        let measured = validation.filter(\.loss.isFinite)
        guard let best = measured.min(by: { $0.loss < $1.loss }) else { return "" }
        let points = measured.map { formatted("%.1f,%.1f", x($0.step), y(Float($0.loss))) }
        var out = "<polyline fill=\"none\" stroke=\"#e6550d\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>\n"
        for v in measured { out += formatted("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#e6550d\"/>\n", x(v.step), y(Float(v.loss))) }
        out += formatted("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"none\" stroke=\"#e6550d\" stroke-width=\"2\"/>\n", x(best.step), y(Float(best.loss)))
        return out + formatted("<text x=\"%.1f\" y=\"24\" fill=\"#e6550d\" text-anchor=\"end\">validation: best %.4f at step %d</text>\n", 700.0, best.loss, best.step)
    }

    /// printf-style formatting without Foundation.
    private func formatted(_ format: String, _ arguments: CVarArg...) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = withVaList(arguments) { vsnprintf(&buffer, buffer.count, format, $0) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes the SVG to `path`, atomically.
    public func write(to path: String) throws {
        try FileIO.writeAtomically(path, text: svg())
    }
}
