import Foundation

/// An SVG line chart of a shape sweep: one line per case (suite, op, variant, backend), the
/// shapes along x in sweep order, the median time along y (logarithmic when the times span more
/// than a factor of 20), one marker per measured shape.
public struct SweepPlot {
    public var records: [BenchRecord]
    public var title: String

    public init(records: [BenchRecord], title: String = "lowrank-bench: median time per shape") {
        self.records = records
        self.title = title
    }

    private static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// The shapes in the order they were first measured, labelled by what varies between them.
    private var shapes: (list: [LayerShape], labels: [String], axis: String) {
        var list: [LayerShape] = []
        for s in records.map(\.shape) where !list.contains(s) { list.append(s) }
        let fields: [(String, (LayerShape) -> Int)] = [("T", { $0.t }), ("d_in", { $0.dIn }), ("d_out", { $0.dOut }), ("r", { $0.r })]
        let varying = fields.filter { f in Set(list.map(f.1)).count > 1 }
        let shown = varying.isEmpty ? fields : varying
        let labels = list.map { s in shown.map { "\(shown.count > 1 ? $0.0 + "=" : "")\($0.1(s))" }.joined(separator: " ") }
        return (list, labels, shown.map(\.0).joined(separator: ", "))
    }

    public func svg() -> String {
        let (width, height) = (960.0, 560.0)
        let (left, right, top, bottom) = (80.0, 330.0, 50.0, 80.0)
        let plotW = width - left - right, plotH = height - top - bottom
        let (shapeList, labels, axis) = shapes
        var series: [(name: String, points: [(Int, Double)])] = []
        for r in records {
            let name = "\(r.suite) \(r.op) · \(r.variant) · \(r.backend)"
            let x = shapeList.firstIndex(of: r.shape)!
            if let i = series.firstIndex(where: { $0.name == name }) { series[i].points.append((x, r.msMedian)) } else { series.append((name, [(x, r.msMedian)])) }
        }
        let times = records.map(\.msMedian).filter { $0 > 0 }
        let (lo, hi) = (times.min() ?? 1, times.max() ?? 1)
        let logarithmic = hi / lo > 20
        let yMin = logarithmic ? pow(10, floor(log10(lo))) : 0, yMax = logarithmic ? pow(10, ceil(log10(hi))) : niceCeiling(hi * 1.05)
        func y(_ v: Double) -> Double {
            let f = logarithmic ? (log10(max(v, yMin)) - log10(yMin)) / (log10(yMax) - log10(yMin)) : (v - yMin) / (yMax - yMin)
            return top + plotH * (1 - f)
        }
        func x(_ i: Int) -> Double { left + (shapeList.count == 1 ? plotW / 2 : plotW * Double(i) / Double(shapeList.count - 1)) }

        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="24" font-size="16">\(escape(title))</text>
        <text x="\(left)" y="40" fill="#555">\(escape(Set(records.map { "\($0.backend): \($0.device)" }).sorted().joined(separator: "; ")))</text>

        """
        // y grid and ticks
        var ticks: [Double] = []
        if logarithmic {
            for decade in stride(from: log10(yMin), through: log10(yMax), by: 1) {
                for m in [1.0, 2, 5] where pow(10, decade) * m <= yMax { ticks.append(pow(10, decade) * m) }
            }
        } else {
            for k in 0...5 { ticks.append(yMin + (yMax - yMin) * Double(k) / 5) }
        }
        for t in ticks {
            out += "<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(f(y(t)))\" y2=\"\(f(y(t)))\" stroke=\"#e5e5e5\"/>\n"
            out += "<text x=\"\(left - 6)\" y=\"\(f(y(t) + 4))\" text-anchor=\"end\">\(tickLabel(t))</text>\n"
        }
        out += "<text transform=\"translate(20,\(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">median ms\(logarithmic ? " (log scale)" : "")</text>\n"
        for (i, label) in labels.enumerated() {
            out += "<line x1=\"\(f(x(i)))\" x2=\"\(f(x(i)))\" y1=\"\(top)\" y2=\"\(top + plotH)\" stroke=\"#f0f0f0\"/>\n"
            out += "<text x=\"\(f(x(i)))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(escape(label))</text>\n"
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 24))\" text-anchor=\"middle\">shape (\(escape(axis)))</text>\n"
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#333\"/>\n"
        for (n, s) in series.enumerated() {
            let color = Self.palette[n % Self.palette.count], dash = n >= Self.palette.count ? " stroke-dasharray=\"6 3\"" : ""
            let points = s.points.sorted { $0.0 < $1.0 }
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"\(points.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " "))\"/>\n"
            for p in points { out += "<circle cx=\"\(f(x(p.0)))\" cy=\"\(f(y(p.1)))\" r=\"3\" fill=\"\(color)\"/>\n" }
            let ly = top + 8 + 18 * Double(n)
            out += "<line x1=\"\(f(width - right + 16))\" x2=\"\(f(width - right + 40))\" y1=\"\(f(ly))\" y2=\"\(f(ly))\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>\n"
            out += "<text x=\"\(f(width - right + 46))\" y=\"\(f(ly + 4))\">\(escape(s.name))</text>\n"
        }
        return out + "</svg>\n"
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }

    private func tickLabel(_ v: Double) -> String {
        v >= 1 ? String(format: "%g", v) : String(format: "%.3g", v)
    }

    private func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(v)))
        return ([1.0, 2, 2.5, 5, 10].first { $0 * magnitude >= v } ?? 10) * magnitude
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
