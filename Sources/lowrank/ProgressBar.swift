import Foundation
import LowRankModels

/// Training progress on stderr: a bar redrawn in place on a terminal, or a line every 5% of the
/// run when stderr is a log.
struct ProgressBar {
    private let interactive = isatty(2) == 1
    private let start = DispatchTime.now().uptimeNanoseconds
    private var firstStep = 0
    private var tokens = 0
    private var lastLogged = 0

    /// Counts time and speed from `step`, where a resumed run starts.
    mutating func resumed(at step: Int) {
        firstStep = step
        lastLogged = step
    }

    mutating func update(_ p: TrainingProgress) {
        tokens += p.tokens
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let eta = elapsed / Double(max(1, p.step - firstStep)) * Double(p.totalSteps - p.step)
        let width = 24, filled = width * p.step / max(1, p.totalSteps)
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" + String(repeating: " ", count: width - filled - 1) : "")
        let line = "step \(p.step)/\(p.totalSteps) [\(bar)] loss \(String(format: "%.4f", p.loss)) · "
            + "\(Int(Double(tokens) / max(elapsed, 1e-9))) tok/s · ETA \(Self.clock(eta))"
        if let v = p.validation {
            let note = "step \(p.step)/\(p.totalSteps): validation loss \(String(format: "%.4f", v.loss))\(v.isBest ? " (best so far)" : "")\n"
            FileHandle.standardError.write(Data(((interactive ? "\r\u{1B}[K" : "") + note).utf8))
        }
        if interactive {
            FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K" + (p.step == p.totalSteps ? "\n" : "")).utf8))
        } else if p.step == p.totalSteps || p.step - lastLogged >= max(1, p.totalSteps / 20) {
            FileHandle.standardError.write(Data((line + "\n").utf8))
            lastLogged = p.step
        }
    }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        let mmss = String(format: "%02d:%02d", s / 60 % 60, s % 60)
        return s >= 3600 ? "\(s / 3600):\(mmss)" : mmss
    }
}
