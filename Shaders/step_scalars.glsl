// What changes from one training step to the next, read from a buffer (StepScalars in
// Sources/LowRankVulkan/StepScalars.swift, bound at set 1 of every pipeline) rather than from push
// constants, so that a step's recorded commands are the same every step: the run's dropout seed,
// and the optimizer step's bias correction and per-tensor rates.
layout(std430, set = 1, binding = 0) readonly buffer StepScalarsBuf {
    uint run_seed;
    // AdamW: √(1 − β₂ᵗ), then per tensor (1 − lr·λ, −lr/(1 − β₁ᵗ)) with its own learning rate.
    float bias2_root;
    vec2 adamw_rates[];
} step_scalars;

// An op's dropout seed mixed with the run's, as Op.reseeded mixes them (LoRAOptions.reseeded).
uint dropout_seed(uint op_seed) { return op_seed ^ (step_scalars.run_seed * 0x9E3779B1u); }
