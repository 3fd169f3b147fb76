#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// cast into a block-quantized type, bit for bit what Quantizer.quantize gives where the device's
// division is correctly rounded (lavapipe's is; Vulkan allows 2.5 ulp, which can move a value that
// sits on a rounding boundary). Host defines: QUANT, A_T, PASS:
//   PASS 0: one invocation per NF4 block of 64 (codes and absmax; with double quantization the
//           absmax goes to `absmax_out` for the next passes), or per pair of GGML blocks (68 or 36
//           bytes, whole words, so no two invocations share a word).
//   PASS 1 (double quantization): the absmax mean, in one workgroup with compensated sums.
//   PASS 2 (double quantization): one workgroup of 64 per 256 absmax values: their scale and codes.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
layout(std430, binding = 1) buffer QBuf { uint q_words[]; };
#if QUANT == 2
layout(std430, binding = 2) buffer AbsmaxBuf { float absmax_out[]; };
#endif
#define QWORDS q_words
#include "quant.glsl"

layout(push_constant) uniform Params { uint count; } p;

// The index of the NF4 value nearest to v (the lower one on a tie), v clamped to [-1, 1]:
// Quantizer.nearest's twin.
uint nearest_nf4(float v) {
    float x = clamp(v, -1.0, 1.0);
    uint lo = 0u, hi = 15u;
    while (hi - lo > 1u) {
        uint mid = (lo + hi) / 2u;
        if (uintBitsToFloat(NF4_BITS[mid]) <= x) lo = mid; else hi = mid;
    }
    return abs(x - uintBitsToFloat(NF4_BITS[hi])) < abs(x - uintBitsToFloat(NF4_BITS[lo])) ? hi : lo;
}

#if PASS == 2
// bitsandbytes' CPU coder of the absmax values (Quantizer.dynamicCode's twin): the value's point on
// a grid of 65536 over [-1, 1], then the number of grid starts at or below it. The host passes the
// starts, QuantizationTables.dynamicGridStarts, as DYNAMIC_GRID_STARTS.
const uint GRID_STARTS[255] = uint[255](DYNAMIC_GRID_STARTS);

uint dynamic_code(float normalized) {
    precise float point = (clamp(normalized, -1.0, 1.0) + 1.0) * 0.5 * 65535.0 + 0.5;
    uint u = uint(point), lo = 0u, hi = 255u;
    while (lo < hi) {
        uint mid = (lo + hi) / 2u;
        if (GRID_STARTS[mid] <= u) lo = mid + 1u; else hi = mid;
    }
    return lo;
}
#endif

// C's roundf for the magnitudes quantization meets: half away from zero.
float round_half_away(float v) { return sign(v) * floor(abs(v) + 0.5); }

uint f16_bits(float v) { return uint(float16BitsToUint16(float16_t(v))); }

#if PASS == 0 && QUANT <= 2
void main() {
    uint block = gl_GlobalInvocationID.x, n = p.count;
    if (block >= ceil_div(n, 64u)) return;
    uint first = block * 64u, last = min(n, first + 64u);
    float absmax = 0.0;
    for (uint i = first; i < last; i++) absmax = max(absmax, abs(to_f32(a_data[i])));
    float reciprocal = 1.0 / absmax;  // bitsandbytes scales by the reciprocal; zeros get code 0
    for (uint w = 0u; w < 8u && first + 8u * w < last; w++) {
        uint word = 0u;
        for (uint b = 0u; b < 8u; b++) {  // eight nibbles: bytes hold elements (2k, 2k+1) as (high, low)
            uint i = first + 8u * w + b;
            precise float normalized = to_f32(a_data[min(i, last - 1u)]) * reciprocal;
            uint code = i < last && absmax != 0.0 ? nearest_nf4(normalized) : 0u;
            word |= code << ((b >> 1) * 8u + ((b & 1u) == 0u ? 4u : 0u));
        }
        q_words[block * 8u + w] = word;
    }
#if QUANT == 1
    q_words[nf4_absmax_word(n) + block] = floatBitsToUint(absmax);
#else
    absmax_out[block] = absmax;
#endif
}
#elif PASS == 0
void main() {
    uint pair = gl_GlobalInvocationID.x, blocks = p.count / 32u;
    if (2u * pair >= blocks) return;
    uint block_bytes = QUANT == 3 ? 34u : 18u;
    uint bytes[68];
    for (uint b = 0u; b < 68u; b++) bytes[b] = 0u;
    for (uint h = 0u; h < 2u && 2u * pair + h < blocks; h++) {
        uint first = (2u * pair + h) * 32u, at = h * block_bytes;
        float amax = 0.0, extreme = 0.0;
        for (uint j = 0u; j < 32u; j++) {
            float v = to_f32(a_data[first + j]);
            if (amax < abs(v)) { amax = abs(v); extreme = v; }
        }
#if QUANT == 3
        float d = amax / 127.0;
#else
        float d = extreme / -8.0;  // the signed extreme maps to -8, as GGML's reference quantizer does
#endif
        float id = d != 0.0 ? 1.0 / d : 0.0;
        uint dbits = f16_bits(d);
        bytes[at] = dbits & 0xFFu;
        bytes[at + 1u] = dbits >> 8;
#if QUANT == 3
        for (uint j = 0u; j < 32u; j++) {
            int q = int(clamp(round_half_away(to_f32(a_data[first + j]) * id), -127.0, 127.0));
            bytes[at + 2u + j] = uint(q) & 0xFFu;
        }
#else
        for (uint j = 0u; j < 16u; j++) {
            uint lo = min(15u, uint(max(0.0, to_f32(a_data[first + j]) * id + 8.5)));
            uint hi = min(15u, uint(max(0.0, to_f32(a_data[first + j + 16u]) * id + 8.5)));
            bytes[at + 2u + j] = lo | (hi << 4);
        }
#endif
    }
    uint first_word = pair * block_bytes * 2u / 4u;
    uint words = ceil_div(min(2u, blocks - 2u * pair) * block_bytes, 4u);
    for (uint w = 0u; w < words; w++)
        q_words[first_word + w] = bytes[4u * w] | (bytes[4u * w + 1u] << 8) | (bytes[4u * w + 2u] << 16) | (bytes[4u * w + 3u] << 24);
}
#elif PASS == 1
shared float partial_hi[256];
shared float partial_lo[256];

// Error-free sum: hi + lo == a + b exactly.
void two_sum(float a, float b, out float hi, out float lo) {
    precise float s = a + b;
    precise float bb = s - a;
    precise float err = (a - (s - bb)) + (b - bb);
    hi = s;
    lo = err;
}

void main() {
    uint lid = gl_LocalInvocationID.x, blocks = ceil_div(p.count, 64u);
    float hi = 0.0, lo = 0.0;
    for (uint i = lid; i < blocks; i += 256u) {
        float e;
        two_sum(hi, absmax_out[i], hi, e);
        lo += e;
    }
    partial_hi[lid] = hi;
    partial_lo[lid] = lo;
    barrier();
    if (lid == 0u) {
        float s = 0.0, c = 0.0;
        for (uint t = 0u; t < 256u; t++) {
            float e;
            two_sum(s, partial_hi[t], s, e);
            c += e + partial_lo[t];
        }
        // mean = (s + c) / blocks, rounded once: the quotient, then its remainder's correction.
        float total = float(blocks);
        float q = s / total;
        precise float r = fma(-q, total, s) + c;
        q_words[nf4_mean_word(p.count)] = floatBitsToUint(q + r / total);
    }
}
#else
shared float largest[64];

void main() {
    uint lid = gl_LocalInvocationID.x, nested = gl_WorkGroupID.x, blocks = ceil_div(p.count, 64u);
    float mean = uintBitsToFloat(q_words[nf4_mean_word(p.count)]);
    float centred[4];
    float m = 0.0;
    for (uint k = 0u; k < 4u; k++) {
        uint i = nested * 256u + 4u * lid + k;
        centred[k] = i < blocks ? absmax_out[i] - mean : 0.0;
        m = max(m, abs(centred[k]));
    }
    largest[lid] = m;
    barrier();
    for (uint width = 32u; width > 0u; width >>= 1) {
        if (lid < width) largest[lid] = max(largest[lid], largest[lid + width]);
        barrier();
    }
    float scale = largest[0];
    if (lid == 0u) q_words[nf4_nested_scale_word(p.count) + nested] = floatBitsToUint(scale);
    if (nested * 256u + 4u * lid >= blocks) return;
    float reciprocal = 1.0 / scale;
    uint word = 0u;
    for (uint k = 0u; k < 4u; k++) {
        precise float normalized = centred[k] * reciprocal;
        if (nested * 256u + 4u * lid + k < blocks && scale != 0.0) word |= dynamic_code(normalized) << (8u * k);
    }
    q_words[nf4_absmax_word(p.count) + nested * 64u + lid] = word;
}
#endif
