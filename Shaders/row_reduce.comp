#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// out[row] = Σ a[row, :]² (ROOT = 0) or its square root (ROOT = 1), f32, one workgroup per row
// and a fixed-shape tree in shared memory, so the result does not depend on scheduling.
// With QUANT other than QUANT_NONE (quant.glsl) the input is a block-quantized tensor, bound whole, of `total` elements
// (DoRA's ‖W‖²_row of a quantized weight), and `first_row` places the window of rows.
// Host defines: A_T, ROOT, QUANT.
layout(local_size_x = 256) in;

#if QUANT != QUANT_NONE
layout(std430, binding = 0) readonly buffer ABuf { uint a_words[]; };
#define QWORDS a_words
#include "quant.glsl"
#else
layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
#endif
layout(std430, binding = 1) writeonly buffer OutBuf { float out_data[]; };

layout(push_constant) uniform Params { uint rows, columns, first_row, total; } p;

shared float partial[256];

void main() {
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= p.rows) return;  // uniform across the workgroup
    uint lid = gl_LocalInvocationID.x;
    float s = 0.0;
    for (uint c = lid; c < p.columns; c += 256u) {
#if QUANT != QUANT_NONE
        float v = dequant((p.first_row + row) * p.columns + c, p.total);
#else
        float v = to_f32(a_data[row * p.columns + c]);
#endif
        s = fma(v, v, s);
    }
    partial[lid] = s;
    barrier();
    for (uint width = 128u; width > 0u; width >>= 1) {
        if (lid < width) partial[lid] += partial[lid + width];
        barrier();
    }
    if (lid == 0u) out_data[row] = ROOT != 0 ? sqrt(partial[0]) : partial[0];
}
