#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// Mean cross-entropy over the rows whose label is not IGNORE_INDEX (CPUBackend+Loss.swift is the twin).
// PASS_ROW_LOSSES: one workgroup per row: logsumexp (max-shifted) and the row's loss, 0 when ignored and
//         NaN for a label outside [0, V).
// PASS_MEAN: one workgroup: loss = Σ row losses / counted rows, by fixed-shape trees.
// PASS_COUNT: one workgroup: counted rows, for backward.
// PASS_LOGIT_GRADIENT: d logits = (softmax − onehot)·dLoss / counted, one invocation per element.
// Host defines: PASS, IGNORE_INDEX, L_T, C_T, C_FROM_F32.
#define REDUCE_SIZE 256u
layout(local_size_x = 256) in;
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer LabelBuf { int labels[]; };
#if PASS == PASS_ROW_LOSSES
layout(std430, binding = 1) readonly buffer LogitBuf { L_T logits[]; };
layout(std430, binding = 2) writeonly buffer LseBuf { float lse_data[]; };
layout(std430, binding = 3) writeonly buffer RowLossBuf { float row_loss[]; };
#elif PASS == PASS_MEAN
layout(std430, binding = 1) readonly buffer RowLossBuf { float row_loss[]; };
layout(std430, binding = 2) writeonly buffer LossBuf { float loss[]; };
#elif PASS == PASS_COUNT
layout(std430, binding = 1) writeonly buffer CountBuf { float counted[]; };
#else
layout(std430, binding = 1) readonly buffer LogitBuf { L_T logits[]; };
layout(std430, binding = 2) readonly buffer LseBuf { float lse_data[]; };
layout(std430, binding = 3) readonly buffer LossGradBuf { float loss_grad[]; };
layout(std430, binding = 4) readonly buffer CountBuf { float counted[]; };
layout(std430, binding = 5) writeonly buffer OutBuf { C_T out_data[]; };
#endif

layout(push_constant) uniform Params { uint rows, classes; } p;

#define NAN uintBitsToFloat(0x7FC00000u)

bool valid(int label) { return label >= 0 && uint(label) < p.classes; }

void main() {
    uint lid = gl_LocalInvocationID.x;
#if PASS == PASS_ROW_LOSSES
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= p.rows) return;  // uniform across the workgroup
    uint base = row * p.classes;
    float largest = uintBitsToFloat(0xFF800000u);
    for (uint c = lid; c < p.classes; c += 256u) largest = max(largest, to_f32(logits[base + c]));
    largest = workgroup_max(largest);
    float s = 0.0;
    for (uint c = lid; c < p.classes; c += 256u) s += exp(to_f32(logits[base + c]) - largest);
    float lse = largest + log(workgroup_sum(vec4(s, 0.0, 0.0, 0.0)).x);
    if (lid == 0u) {
        int label = labels[row];
        lse_data[row] = lse;
        row_loss[row] = label == IGNORE_INDEX ? 0.0 : valid(label) ? lse - to_f32(logits[base + uint(label)]) : NAN;
    }
#elif PASS == PASS_MEAN || PASS == PASS_COUNT
    vec4 part = vec4(0.0);
    for (uint row = lid; row < p.rows; row += 256u) {
        bool counts = labels[row] != IGNORE_INDEX;
#if PASS == PASS_MEAN
        part += vec4(row_loss[row], counts ? 1.0 : 0.0, 0.0, 0.0);
#else
        part.y += counts ? 1.0 : 0.0;
#endif
    }
    vec4 sums = workgroup_sum(part);
#if PASS == PASS_MEAN
    if (lid == 0u) loss[0] = sums.x / sums.y;
#else
    if (lid == 0u) counted[0] = sums.y;
#endif
#else
    float factor = loss_grad[0] / counted[0];
    uint stride = gl_NumWorkGroups.x * 256u, count = p.rows * p.classes;
    for (uint i = gl_GlobalInvocationID.x; i < count; i += stride) {
        uint row = i / p.classes, c = i % p.classes;
        int label = labels[row];
        float softmax = exp(to_f32(logits[i]) - lse_data[row]) - (int(c) == label ? 1.0 : 0.0);
        out_data[i] = C_FROM_F32(label == IGNORE_INDEX ? 0.0 : valid(label) ? softmax * factor : NAN);
    }
#endif
}
