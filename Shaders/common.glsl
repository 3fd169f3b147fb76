// Shared by every kernel: storage-type conversions and the dropout mask.
// Each tensor binding's element type is a host define (X_T = float, float16_t for f16, uint16_t for
// bf16) and stores go through a host-chosen X_FROM_F32 (f32_to_f32, f32_to_f16, f32_to_bf16).
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require

float to_f32(float v) { return v; }
float to_f32(float16_t v) { return float(v); }
// uint16_t is only ever bf16 here: the top half of an f32.
float to_f32(uint16_t v) { return uintBitsToFloat(uint(v) << 16); }

float f32_to_f32(float v) { return v; }
float16_t f32_to_f16(float v) { return float16_t(v); }
uint16_t f32_to_bf16(float v) {
    uint bits = floatBitsToUint(v);
    if (isnan(v)) return uint16_t((bits >> 16) | 0x40u);
    bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even
    return uint16_t(bits >> 16);
}

// Must match DropoutMask.swift bit for bit.
uint lowbias32(uint x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

float dropout_factor(uint seed, uint threshold, float keep_scale, uint row, uint col) {
    uint h = lowbias32(lowbias32(row ^ lowbias32(seed)) + col);
    return (h >> 8) >= threshold ? keep_scale : 0.0;
}

uint ceil_div(uint a, uint b) { return (a + b - 1u) / b; }
