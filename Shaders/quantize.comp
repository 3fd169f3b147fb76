#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// cast into a block-quantized type, bit for bit what Quantizer.quantize gives where the device's
// division is correctly rounded (lavapipe's is; Vulkan allows 2.5 ulp, which can move a value that
// sits on a rounding boundary). Host defines: QUANT, A_T, PASS:
//   PASS_BLOCKS: one invocation per NF4 block of 64 (codes and absmax; with double quantization the
//           absmax goes to `absmax_out` for the next passes), or per pair of GGML blocks (68 or 36
//           bytes, whole words, so no two invocations share a word).
//   PASS_ABSMAX_MEAN (double quantization): the absmax mean, in one workgroup of 32 (PyTorch's order of sums).
//   PASS_NESTED_BLOCKS (double quantization): one workgroup of 64 per 256 absmax values: their scale and codes.
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer ABuf { A_T a_data[]; };
layout(std430, binding = 1) buffer QBuf { uint q_words[]; };
#if QUANT == QUANT_NF4_DOUBLE_QUANT
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

#if PASS == PASS_NESTED_BLOCKS
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

#if PASS == PASS_BLOCKS && (QUANT == QUANT_NF4 || QUANT == QUANT_NF4_DOUBLE_QUANT)
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
#if QUANT == QUANT_NF4
    q_words[nf4_absmax_word(n) + block] = floatBitsToUint(absmax);
#else
    absmax_out[block] = absmax;
#endif
}
#elif PASS == PASS_BLOCKS
void main() {
    uint pair = gl_GlobalInvocationID.x, blocks = p.count / 32u;
    if (2u * pair >= blocks) return;
    uint block_bytes = QUANT == QUANT_Q8_0 ? 34u : 18u;
    uint bytes[68];
    for (uint b = 0u; b < 68u; b++) bytes[b] = 0u;
    for (uint h = 0u; h < 2u && 2u * pair + h < blocks; h++) {
        uint first = (2u * pair + h) * 32u, at = h * block_bytes;
        float amax = 0.0, extreme = 0.0;
        for (uint j = 0u; j < 32u; j++) {
            float v = to_f32(a_data[first + j]);
            if (amax < abs(v)) { amax = abs(v); extreme = v; }
        }
#if QUANT == QUANT_Q8_0
        float d = amax / 127.0;
#else
        float d = extreme / -8.0;  // the signed extreme maps to -8, as GGML's reference quantizer does
#endif
        float id = d != 0.0 ? 1.0 / d : 0.0;
        uint dbits = f16_bits(d);
        bytes[at] = dbits & 0xFFu;
        bytes[at + 1u] = dbits >> 8;
#if QUANT == QUANT_Q8_0
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
#elif PASS == PASS_ABSMAX_MEAN
// The absmax mean in PyTorch's order of f32 additions, which bitsandbytes' `absmax.mean()` takes:
// TorchSum's twin, one invocation per accumulator (row k = lid / 8 of 4, lane lid % 8 of the
// vectors of 8, or of single values below 8), then the combination in invocation 0.
shared float partial[32];

float cascade(uint steps, uint k, uint lane, uint width) {
    uint ceil_log2 = steps <= 2u ? 1u : uint(findMSB(steps - 1u)) + 1u;
    uint power = max(4u, ceil_log2 / 4u), step = 1u << power, mask = step - 1u;
    float acc[4] = float[4](0.0, 0.0, 0.0, 0.0);
    uint i = 0u;
    while (i + step <= steps) {
        for (uint s = 0u; s < step; s++, i++) {
            precise float t = acc[0] + absmax_out[(i * 4u + k) * width + lane];
            acc[0] = t;
        }
        for (uint j = 1u; j < 4u; j++) {
            precise float t = acc[j] + acc[j - 1u];
            acc[j] = t;
            acc[j - 1u] = 0.0;
            if ((i & (mask << (j * power))) != 0u) break;
        }
    }
    for (; i < steps; i++) {
        precise float t = acc[0] + absmax_out[(i * 4u + k) * width + lane];
        acc[0] = t;
    }
    for (uint j = 1u; j < 4u; j++) {
        precise float t = acc[0] + acc[j];
        acc[0] = t;
    }
    return acc[0];
}

// a·b = hi + lo exactly (Dekker's product: no fma, which a device may round in two steps).
void two_product(float a, float b, out float hi, out float lo) {
    precise float ca = 4097.0 * a, cb = 4097.0 * b;
    precise float ah = ca - (ca - a), bh = cb - (cb - b);
    precise float al = a - ah, bl = b - bh;
    precise float p = a * b;
    precise float e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    hi = p;
    lo = e;
}

// s / d for s >= 0 and an integer d > 0, rounded to nearest even as an IEEE division rounds it:
// the device's quotient (Vulkan allows 2.5 ulp) moved by whole ulps while its exact remainder
// says a neighbour is nearer.
float rounded_quotient(float s, float d) {
    float q = s / d;
    for (uint step = 0u; step < 4u; step++) {
        float hi, lo;
        two_product(q, d, hi, lo);
        precise float r = (s - hi) - lo;  // s − q·d, exact: s − hi is (Sterbenz)
        uint bits = floatBitsToUint(q);
        precise float half_ulp_d = (uintBitsToFloat(bits + 1u) - q) * 0.5 * d;
        bool below = r > half_ulp_d || (r == half_ulp_d && (bits & 1u) != 0u);
        precise float half_down_d = (q - uintBitsToFloat(bits - 1u)) * 0.5 * d;
        bool above = q > 0.0 && (-r > half_down_d || (-r == half_down_d && (bits & 1u) != 0u));
        if (!below && !above) break;
        q = uintBitsToFloat(below ? bits + 1u : bits - 1u);
    }
    return q;
}

void main() {
    uint lid = gl_LocalInvocationID.x, n = ceil_div(p.count, 64u);
    uint width = n >= 8u ? 8u : 1u, vectors = n / width, steps = vectors / 4u;
    uint lane = lid % 8u;
    partial[lid] = lane < width ? cascade(steps, lid / 8u, lane, width) : 0.0;
    barrier();
    if (lid == 0u) {
        precise float total = 0.0;
        for (uint i = vectors * width; i < n; i++) total += absmax_out[i];
        for (uint l = 0u; l < width; l++) {
            precise float s = partial[l];
            for (uint v = steps * 4u; v < vectors; v++) s += absmax_out[v * width + l];
            for (uint k = 1u; k < 4u; k++) s += partial[k * 8u + l];
            total += s;
        }
        q_words[nf4_mean_word(p.count)] = floatBitsToUint(rounded_quotient(total, float(n)));
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
