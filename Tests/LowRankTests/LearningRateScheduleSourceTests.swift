import Foundation
import LowRank
import LowRankModels
import Testing

/// `LearningRateSchedule.Kind` is the one list of schedules: the C header and the Python package
/// spell it again (they cannot import Swift), so they are checked against it here, as text.
@Suite("One source for the learning-rate schedules")
struct LearningRateScheduleSourceTests {
    static func source(_ path: String) throws -> String {
        try String(contentsOfFile: GoldenCases.packageRoot.appendingPathComponent(path).path, encoding: .utf8)
    }

    /// Each case of the Swift enum and the value the C ABI gives it (its position).
    static let expected = LearningRateSchedule.Kind.allCases.enumerated().map { ($1.rawValue, $0) }

    @Test func cHeaderEnumeratesTheSwiftCases() throws {
        let header = try Self.source("Sources/CLowRank/lowrank.h")
        let body = try #require(header.firstMatch(of: /typedef enum lowrank_schedule \{([^}]*)\}/)?.1)
        let cases = body.matches(of: /LOWRANK_SCHEDULE_(\w+) = (\d+)/).map { (String($0.1).lowercased(), Int($0.2)!) }
        #expect(cases.map(\.0) == Self.expected.map(\.0))
        #expect(cases.map(\.1) == Self.expected.map(\.1))
    }

    @Test func pythonSchedulesAreTheSwiftCases() throws {
        let model = try Self.source("python/lowrank/model.py")
        let literal = try #require(model.firstMatch(of: /SCHEDULES = \{([^}]*)\}/)?.1)
        let cases = literal.matches(of: /"(\w+)": (\d+)/).map { (String($0.1), Int($0.2)!) }
        #expect(cases.map(\.0) == Self.expected.map(\.0))
        #expect(cases.map(\.1) == Self.expected.map(\.1))
    }

    /// The trainer's setting is the same type, and each kind builds the schedule of that kind.
    @Test func trainingSettingsUseTheKind() throws {
        for kind in LearningRateSchedule.Kind.allCases {
            var settings = TrainingSettings()
            settings.schedule = kind
            settings.warmupSteps = 2
            #expect(try settings.optimizer(totalSteps: 10).schedule.kind == kind)
        }
        #expect(throws: LowRankError.self) { try LearningRateSchedule(.cosine, warmupSteps: 0, totalSteps: nil) }
    }
}
