/// Looks at every op step of a plan's runs: its inputs before it runs (an op may write in place)
/// and its outputs after. `LOWRANK_CHECK=f64` attaches one that compares each step with its
/// float64 twin (`Float64Check` in LowRankCPU); `firstNonFiniteStep` attaches one to a single run.
public protocol PlanStepObserver: AnyObject {
    func runWillStart()
    func stepWillRun(_ step: ExecutionPlan.Step, _ op: Op, inputs: [Tensor], outputs: [Tensor]) throws
    func stepDidRun(_ step: ExecutionPlan.Step, _ op: Op, outputs: [Tensor]) throws
    func runDidFinish() throws
}

extension PlanStepObserver {
    public func runWillStart() {}
    public func stepWillRun(_ step: ExecutionPlan.Step, _ op: Op, inputs: [Tensor], outputs: [Tensor]) throws {}
    public func runDidFinish() throws {}
}
