#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// cast from a block-quantized type: out[i] = element first + i of the packed tensor (count
// elements in all), bit for bit what Quantizer.dequantize gives. out may be a window of a larger tensor.
// Host defines: QUANT, C_T, C_FROM_F32. Workgroup size: specialization constant 0.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer QBuf { uint q_words[]; };
layout(std430, binding = 1) writeonly buffer CBuf { C_T c_data[]; };
#define QWORDS q_words
#include "quant.glsl"

layout(push_constant) uniform Params { uint window, first, count; } p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.window; i += stride) c_data[i] = C_FROM_F32(dequant(p.first + i, p.count));
}
