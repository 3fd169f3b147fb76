// What matmul.comp and matmul_vec.comp share: quad loads of float operands, and the epilogue after the
// first product (the second product with its dropout, DoRA's compose and inner, bias and accumulation,
// then the store into C), after the bindings both declare (the same layout, so that one encoder binds
// either). The includer declares the push constants first (matmul.comp's block), defines the same macros,
// enables GL_EXT_control_flow_attributes and, with QUANT_TABLES_SHARED, calls quant_tables_init before a barrier.

#include "step_scalars.glsl"

#if SPLIT_K == SPLIT_K_REDUCE
layout(std430, binding = 0) readonly buffer PartBuf { float part_data[]; };
#else
layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
layout(std430, binding = 0) readonly buffer AQuads { A_QUAD_T a_quads[]; };
#endif
#if SPLIT_K == SPLIT_K_REDUCE
#elif B_QUANT != QUANT_NONE
// A block-quantized B (a frozen weight), bound whole and dequantized as tiles load (quant.glsl).
layout(std430, binding = 1) readonly buffer BBuf { uint b_words[]; };
#define QWORDS b_words
#define QUANT B_QUANT
// NF4's code tables in shared memory (filled by main): a constant array indexed at run time is kept
// in registers, 256 VGPRs on RADV for double quantization's.
#if B_QUANT == QUANT_NF4 || B_QUANT == QUANT_NF4_DOUBLE_QUANT
#define QUANT_TABLES_SHARED 1
#endif
#include "quant.glsl"
#else
layout(std430, binding = 1) readonly buffer BBuf { B_T b_data[]; };
layout(std430, binding = 1) readonly buffer BQuads { B_QUAD_T b_quads[]; };
#endif
#if ACCUMULATE
layout(std430, binding = 2) buffer CBuf { C_T c_data[]; };
#else
layout(std430, binding = 2) writeonly buffer CBuf { C_T c_data[]; };
#endif
#if HAS_BIAS
layout(std430, binding = 3) readonly buffer BiasBuf { BIAS_T bias_data[]; };
#endif
#if SECOND
layout(std430, binding = 3 + HAS_BIAS) readonly buffer A2Buf { A2_T a2_data[]; };
layout(std430, binding = 4 + HAS_BIAS) readonly buffer B2Buf { B2_T b2_data[]; };
#endif
#if KSCALE || DORA
layout(std430, binding = 3 + HAS_BIAS + 2 * SECOND) readonly buffer VecBuf { float vec_data[]; };
#endif
#if WRITE_INNER
layout(std430, binding = 4 + HAS_BIAS + 2 * SECOND) buffer InnerBuf { float inner_data[]; };
#endif

vec4 to_f32x4(vec4 v) { return v; }
vec4 to_f32x4(f16vec4 v) { return vec4(v); }
vec4 to_f32x4(u16vec4 v) { return uintBitsToFloat(uvec4(v) << 16); }  // bf16: the top half of an f32

// Four consecutive elements of DATA from index I, of which the first VALID exist (zero after them):
// one 16-byte (or 8-byte) load of QUADS when all four exist and I is a multiple of four.
#define LOAD_QUAD(DATA, QUADS, I, VALID) \
    ((VALID) == 4u && ((I) & 3u) == 0u ? to_f32x4(QUADS[(I) >> 2]) \
     : vec4((VALID) > 0u ? to_f32(DATA[(I)]) : 0.0, (VALID) > 1u ? to_f32(DATA[(I) + 1u]) : 0.0, \
            (VALID) > 2u ? to_f32(DATA[(I) + 2u]) : 0.0, (VALID) > 3u ? to_f32(DATA[(I) + 3u]) : 0.0))

float dropout_at(uint row, uint col) { return dropout_factor(dropout_seed(p.seed), p.drop_threshold, p.keep_scale, row, col); }

#if SECOND
// The second product at (m, n), summed in k order from global memory as the epilogue needs it: its
// inner dimension is the rank, so shared tiles would save little, and a second set of TM×TN
// accumulators held through the first product would cost the occupancy of every LoRA product.
float second_at(uint m, uint n) {
    float s = 0.0;
    for (uint k = 0u; k < p.K2; k++) {
#if TRANS_A
        float a = to_f32(a2_data[k * p.lda2 + m]);
#else
        float a = to_f32(a2_data[m * p.lda2 + k]);
#endif
#if TRANS_B
        float b = to_f32(b2_data[n * p.ldb2 + k]);
#else
        float b = to_f32(b2_data[k * p.ldb2 + n]);
#endif
        s = fma(a, b, s);
    }
    return s;
}
#endif

// C at (m, n) from the first product's sum there.
void store_c(uint m, uint n, float product) {
    float v = p.alpha * product;
#if DROPOUT_PRODUCT
    v *= dropout_at(p.m0 + m, p.n0 + n);
#endif
#if SECOND
    float v2 = p.alpha2 * second_at(m, n);
#if DROPOUT_SECOND
    v2 *= dropout_at(p.m0 + m, p.n0 + n);
#endif
#if WRITE_INNER
    inner_data[m * p.ldc + n] = v + v2;
#endif
#if DORA
    v = dora_compose(v, v2, vec_data[n], DORA_ADD_BASE != 0);
#else
    v += v2;
#endif
#elif DORA
    // A block after the first along K: its share of the base, without the LoRA term.
#if WRITE_INNER
    inner_data[m * p.ldc + n] += v;
#endif
    v = dora_compose(v, 0.0, vec_data[n], DORA_ADD_BASE != 0);
#endif
#if HAS_BIAS
    v += to_f32(bias_data[n]);
#endif
#if ACCUMULATE
    v += to_f32(c_data[m * p.ldc + n]);
#endif
    c_data[m * p.ldc + n] = C_FROM_F32(v);
}
