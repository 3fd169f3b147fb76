import Foundation
import LowRank
import Testing

@Suite("README commands")
struct ReadmeCommandTests {
    /// On a fresh Debian machine the package lists are empty, so `apt-get install` alone fails with
    /// "Unable to locate package": every install the README tells a person to run updates first.
    @Test func aptInstallUpdatesFirst() throws {
        let readme = String(decoding: try FileIO.read(GoldenCases.packageRoot.appendingPathComponent("README.md").path), as: UTF8.self)
        let installs = readme.split(separator: "\n").filter { $0.contains("apt-get install") }
        #expect(!installs.isEmpty)
        for line in installs {
            let update = line.range(of: "apt-get update &&"), install = line.range(of: "apt-get install")!
            #expect(update.map { $0.upperBound <= install.lowerBound } == true, "\(line)")
        }
    }
}
