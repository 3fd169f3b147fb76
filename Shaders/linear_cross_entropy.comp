#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// The row passes of the fused LM head and cross-entropy (VulkanBackend+LinearCrossEntropy.swift;
// CPUBackend+LinearCrossEntropy.swift is the twin). matmul.comp forms a block of f32 logits,
// rows [row0, row0 + rows) by classes [class0, class0 + width), into a workspace; then:
// PASS_ROW_UPDATE: one workgroup per row of the block: the online logsumexp, a running max (kept in
//         lse_data until PASS_ROW_LOSSES) and a running sum of exponentials rescaled when the max
//         grows (each chunk's share summed by a tree), and the label's logit when this chunk holds it.
// PASS_ROW_LOSSES: per row: lse = max + log(sum), and the row's loss as cross_entropy.comp's
//         PASS_ROW_LOSSES gives it, whose PASS_MEAN then forms the mean.
// PASS_LOGIT_GRADIENT: the workspace in place: (softmax − onehot)·dLoss / counted, 0 on ignored rows.
// Host defines: PASS, IGNORE_INDEX.
#define REDUCE_SIZE 256u
layout(local_size_x = 256) in;
#include "reduce.glsl"

layout(std430, binding = 0) readonly buffer LabelBuf { int labels[]; };
#if PASS == PASS_ROW_UPDATE
layout(std430, binding = 1) readonly buffer LogitBuf { float logits[]; };
layout(std430, binding = 2) buffer LseBuf { float lse_data[]; };
layout(std430, binding = 3) buffer SumBuf { float sums[]; };
layout(std430, binding = 4) writeonly buffer TargetBuf { float target[]; };
#elif PASS == PASS_ROW_LOSSES
layout(std430, binding = 1) buffer LseBuf { float lse_data[]; };
layout(std430, binding = 2) readonly buffer SumBuf { float sums[]; };
layout(std430, binding = 3) readonly buffer TargetBuf { float target[]; };
layout(std430, binding = 4) writeonly buffer RowLossBuf { float row_loss[]; };
#else
layout(std430, binding = 1) buffer LogitBuf { float logits[]; };
layout(std430, binding = 2) readonly buffer LseBuf { float lse_data[]; };
layout(std430, binding = 3) readonly buffer LossGradBuf { float loss_grad[]; };
layout(std430, binding = 4) readonly buffer CountBuf { float counted[]; };
#endif

layout(push_constant) uniform Params { uint rows, classes, width, row0, class0; } p;

#define NAN uintBitsToFloat(0x7FC00000u)
#define NEG_INF uintBitsToFloat(0xFF800000u)

bool valid(int label) { return label >= 0 && uint(label) < p.classes; }

void main() {
    uint lid = gl_LocalInvocationID.x;
#if PASS == PASS_ROW_UPDATE
    uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    if (row >= p.rows) return;  // uniform across the workgroup
    uint base = row * p.width, r = p.row0 + row;
    bool first = p.class0 == 0u;
    float previous = first ? NEG_INF : lse_data[r];
    float largest = previous;
    for (uint c = lid; c < p.width; c += 256u) largest = max(largest, logits[base + c]);
    largest = workgroup_max(largest);
    float s = 0.0;
    for (uint c = lid; c < p.width; c += 256u) s += exp(logits[base + c] - largest);
    float chunk = workgroup_sum(vec4(s, 0.0, 0.0, 0.0)).x;
    if (lid == 0u) {
        sums[r] = (first ? 0.0 : sums[r] * exp(previous - largest)) + chunk;
        lse_data[r] = largest;
        int label = labels[r];
        if (label >= int(p.class0) && label < int(p.class0 + p.width)) target[r] = logits[base + uint(label) - p.class0];
    }
#elif PASS == PASS_ROW_LOSSES
    for (uint row = gl_GlobalInvocationID.x; row < p.rows; row += gl_NumWorkGroups.x * 256u) {
        int label = labels[row];
        float lse = lse_data[row] + log(sums[row]);
        lse_data[row] = lse;
        row_loss[row] = label == IGNORE_INDEX ? 0.0 : valid(label) ? lse - target[row] : NAN;
    }
#else
    float factor = loss_grad[0] / counted[0];
    uint stride = gl_NumWorkGroups.x * 256u, count = p.rows * p.width;
    for (uint i = gl_GlobalInvocationID.x; i < count; i += stride) {
        uint r = p.row0 + i / p.width, c = p.class0 + i % p.width;
        int label = labels[r];
        float softmax = exp(logits[i] - lse_data[r]) - (int(c) == label ? 1.0 : 0.0);
        logits[i] = label == IGNORE_INDEX ? 0.0 : valid(label) ? softmax * factor : NAN;
    }
#endif
}
