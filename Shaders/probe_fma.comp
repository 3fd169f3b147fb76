#version 450

// The roofline's compute probe: eight independent chains of vec4 multiply-adds per invocation, so
// that latency hides behind them; each invocation writes one value so none of it is dead code.
// Work: invocations · iterations · 8 · 4 FMAs.
layout(local_size_x = 256) in;

layout(std430, binding = 0) writeonly buffer OutBuf { float out_data[]; };

layout(push_constant) uniform Params { uint iterations; float seed; } p;

void main() {
    vec4 a[8];
    for (int c = 0; c < 8; c++) a[c] = vec4(float(gl_GlobalInvocationID.x) * 1e-9 + p.seed + 0.125 * float(c));
    const vec4 m = vec4(0.999999), k = vec4(1e-7);
    for (uint i = 0u; i < p.iterations; i++) {
        a[0] = fma(a[0], m, k); a[1] = fma(a[1], m, k); a[2] = fma(a[2], m, k); a[3] = fma(a[3], m, k);
        a[4] = fma(a[4], m, k); a[5] = fma(a[5], m, k); a[6] = fma(a[6], m, k); a[7] = fma(a[7], m, k);
    }
    vec4 s = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    out_data[gl_GlobalInvocationID.x] = s.x + s.y + s.z + s.w;
}
