// DoRA's output term, shared by the matmul epilogue and the CPU twin's formula
// (CPUBackend+DoRA.swift): (g − 1)·base + g·(s·lora), with g − 1 formed in f32 before it
// multiplies base. The algebraically equal g·(base + s·lora) − base cancels catastrophically when
// g ≈ 1, where trained magnitudes live. With add_base the base itself is added (dropout off: the
// base product is shared with the frozen layer's own output).
float dora_compose(float base, float scaled_lora, float g, bool add_base) {
    float v = (g - 1.0) * base + g * scaled_lora;
    return add_base ? base + v : v;
}
