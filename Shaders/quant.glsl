// Reading block-quantized weights (QuantizedLayout.swift documents the layout; Quantizer.swift is
// the host twin). The including shader declares the packed buffer as `uint QWORDS[]` (a macro
// naming its array), defines QUANT (a QuantFormat case of VulkanBackend+Quantization.swift other than
// QUANT_NONE), and passes the tensor's element count, from which every section's offset follows.
// `dequant(i, n)` is the one decoder of every format (one element), for every kernel that reads a
// quantized weight; `dequant_run(i0, n, v)` the RUN_LENGTH elements from i0 (a multiple of
// RUN_LENGTH, so one block holds them), for NF4, Q8_0, Q4_0 and Q4_1 reading each packed word once and
// the block's scale once (the others decode element by element; `QuantRun` splits the reading from the
// decoding); `dequant_quad(i0)` the 4 elements from i0 (a multiple of 4) of a GGML format (QUANT_QUADS
// defined), the block's scales decoded once. With QUANT_TABLES_SHARED defined, the code tables live in shared memory (QUANT_TABLES,
// below), filled by quant_tables_init(invocation) before a barrier() (the includer enables
// GL_EXT_control_flow_attributes; a workgroup of at least 8 invocations); otherwise they are constant
// arrays (a 256-entry one indexed per element is kept in registers by some compilers: RADV takes 256
// VGPRs).
// Products are `precise` so that no driver fuses them into an FMA: bitsandbytes rounds
// `dynamic[q]·scale`, `+ offset` and `code·absmax` each to f32, and so must we to match its bits.

const uint NF4_BITS[16] = uint[16](
    0xBF800000u, 0xBF3239B1u, 0xBF066B30u, 0xBECA32A0u, 0xBE91A24Du, 0xBE3D353Fu, 0xBDBA7871u, 0x00000000u,
    0x3DA2FAFFu, 0x3E24CAE3u, 0x3E7C04DDu, 0x3EAD033Au, 0x3EE1A4B8u, 0x3F1007ABu, 0x3F3913B3u, 0x3F800000u);
const uint DYNAMIC_BITS[256] = uint[256](
    0xBF7E3333u, 0xBF7A999Au, 0xBF770000u, 0xBF736666u, 0xBF6FCCCDu, 0xBF6C3333u, 0xBF68999Au, 0xBF650000u,
    0xBF616666u, 0xBF5DCCCDu, 0xBF5A3333u, 0xBF56999Au, 0xBF530000u, 0xBF4F6666u, 0xBF4BCCCDu, 0xBF483333u,
    0xBF44999Au, 0xBF410000u, 0xBF3D6666u, 0xBF39CCCDu, 0xBF363334u, 0xBF32999Au, 0xBF2F0000u, 0xBF2B6666u,
    0xBF27CCCDu, 0xBF243334u, 0xBF20999Au, 0xBF1D0000u, 0xBF196666u, 0xBF15CCCDu, 0xBF123334u, 0xBF0E999Au,
    0xBF0B0000u, 0xBF076666u, 0xBF03CCCCu, 0xBF003333u, 0xBEF93332u, 0xBEF20000u, 0xBEEACCCCu, 0xBEE3999Au,
    0xBEDC6666u, 0xBED53333u, 0xBECE0000u, 0xBEC6CCCCu, 0xBEBF999Au, 0xBEB86666u, 0xBEB13333u, 0xBEAA0000u,
    0xBEA2CCCCu, 0xBE9B999Au, 0xBE946666u, 0xBE8D3334u, 0xBE860000u, 0xBE7D9999u, 0xBE6F3333u, 0xBE60CCCDu,
    0xBE526666u, 0xBE440000u, 0xBE35999Au, 0xBE273333u, 0xBE18CCCDu, 0xBE0A6666u, 0xBDF80000u, 0xBDDB3334u,
    0xBDC9EB85u, 0xBDC428F7u, 0xBDBE6667u, 0xBDB8A3D7u, 0xBDB2E148u, 0xBDAD1EB8u, 0xBDA75C2Au, 0xBDA1999Au,
    0xBD9BD70Au, 0xBD96147Bu, 0xBD9051EBu, 0xBD8A8F5Du, 0xBD84CCCDu, 0xBD7E147Bu, 0xBD728F5Du, 0xBD670A3Du,
    0xBD5B851Fu, 0xBD500000u, 0xBD447AE1u, 0xBD38F5C3u, 0xBD2D70A3u, 0xBD21EB85u, 0xBD166667u, 0xBD0AE148u,
    0xBCFEB852u, 0xBCE7AE15u, 0xBCD0A3D7u, 0xBCB9999Au, 0xBCA28F5Du, 0xBC8B851Fu, 0xBC68F5C3u, 0xBC3AE148u,
    0xBC1F3B64u, 0xBC160418u, 0xBC0CCCCDu, 0xBC039581u, 0xBBF4BC6Au, 0xBBE24DD3u, 0xBBCFDF3Bu, 0xBBBD70A4u,
    0xBBAB020Du, 0xBB989374u, 0xBB8624DDu, 0xBB676C8Au, 0xBB428F5Cu, 0xBB1DB22Du, 0xBAF1A9FCu, 0xBAA7EF9Du,
    0xBA7765FFu, 0xBA59E83Eu, 0xBA3C6A80u, 0xBA1EECC1u, 0xBA016F01u, 0xB9C7E283u, 0xB98CE705u, 0xB923D70Bu,
    0xB8BA1F4Bu, 0xB88AEFB3u, 0xB8378034u, 0xB7B24206u, 0xB70205FFu, 0xB65A1A94u, 0xB513A3B7u, 0x00000000u,
    0x3513A3B7u, 0x365A1A94u, 0x370205FFu, 0x37B24206u, 0x38378034u, 0x388AEFB3u, 0x38BA1F4Bu, 0x3923D70Bu,
    0x398CE705u, 0x39C7E283u, 0x3A016F01u, 0x3A1EECC1u, 0x3A3C6A80u, 0x3A59E83Eu, 0x3A7765FFu, 0x3AA7EF9Du,
    0x3AF1A9FCu, 0x3B1DB22Du, 0x3B428F5Cu, 0x3B676C8Au, 0x3B8624DDu, 0x3B989374u, 0x3BAB020Du, 0x3BBD70A4u,
    0x3BCFDF3Bu, 0x3BE24DD3u, 0x3BF4BC6Au, 0x3C039581u, 0x3C0CCCCDu, 0x3C160418u, 0x3C1F3B64u, 0x3C3AE148u,
    0x3C68F5C3u, 0x3C8B851Fu, 0x3CA28F5Du, 0x3CB9999Au, 0x3CD0A3D7u, 0x3CE7AE15u, 0x3CFEB852u, 0x3D0AE148u,
    0x3D166667u, 0x3D21EB85u, 0x3D2D70A3u, 0x3D38F5C3u, 0x3D447AE1u, 0x3D500000u, 0x3D5B851Fu, 0x3D670A3Du,
    0x3D728F5Du, 0x3D7E147Bu, 0x3D84CCCDu, 0x3D8A8F5Du, 0x3D9051EBu, 0x3D96147Bu, 0x3D9BD70Au, 0x3DA1999Au,
    0x3DA75C2Au, 0x3DAD1EB8u, 0x3DB2E148u, 0x3DB8A3D7u, 0x3DBE6667u, 0x3DC428F7u, 0x3DC9EB85u, 0x3DDB3334u,
    0x3DF80000u, 0x3E0A6666u, 0x3E18CCCDu, 0x3E273333u, 0x3E35999Au, 0x3E440000u, 0x3E526666u, 0x3E60CCCDu,
    0x3E6F3333u, 0x3E7D9999u, 0x3E860000u, 0x3E8D3334u, 0x3E946666u, 0x3E9B999Au, 0x3EA2CCCCu, 0x3EAA0000u,
    0x3EB13333u, 0x3EB86666u, 0x3EBF999Au, 0x3EC6CCCCu, 0x3ECE0000u, 0x3ED53333u, 0x3EDC6666u, 0x3EE3999Au,
    0x3EEACCCCu, 0x3EF20000u, 0x3EF93332u, 0x3F003333u, 0x3F03CCCCu, 0x3F076666u, 0x3F0B0000u, 0x3F0E999Au,
    0x3F123334u, 0x3F15CCCDu, 0x3F196666u, 0x3F1D0000u, 0x3F20999Au, 0x3F243334u, 0x3F27CCCDu, 0x3F2B6666u,
    0x3F2F0000u, 0x3F32999Au, 0x3F363334u, 0x3F39CCCDu, 0x3F3D6666u, 0x3F410000u, 0x3F44999Au, 0x3F483333u,
    0x3F4BCCCDu, 0x3F4F6666u, 0x3F530000u, 0x3F56999Au, 0x3F5A3333u, 0x3F5DCCCDu, 0x3F616666u, 0x3F650000u,
    0x3F68999Au, 0x3F6C3333u, 0x3F6FCCCDu, 0x3F736666u, 0x3F770000u, 0x3F7A999Au, 0x3F7E3333u, 0x3F800000u);

#ifdef QUANT_TABLES_SHARED
// NF4's 16 codes, then double quantization's 256: in QUANT_TABLES, an includer's shared float array of
// at least QUANT_TABLE_ENTRIES that it uses for something else outside the loop that reads the tables
// (the coopmat kernel's epilogue stage), else in an array of their own.
#if QUANT == QUANT_NF4_DOUBLE_QUANT
const uint QUANT_TABLE_ENTRIES = 16u + 256u;
#else
const uint QUANT_TABLE_ENTRIES = 16u;
#endif
#ifndef QUANT_TABLES
shared float quant_tables[QUANT_TABLE_ENTRIES];
#define QUANT_TABLES quant_tables
#endif

void quant_tables_init(uint invocation) {
    // Constant indices only, so that the tables are stored from immediates: a constant array indexed
    // at run time is kept whole in registers. The 256 entries go out in 8 parts of 32 from 8
    // invocations, so that no invocation holds more than 32 of them at once.
    if (invocation == 0u) {
        [[unroll]] for (uint i = 0u; i < 16u; i++) QUANT_TABLES[i] = uintBitsToFloat(NF4_BITS[i]);
    }
#if QUANT == QUANT_NF4_DOUBLE_QUANT
    [[unroll]] for (uint part = 0u; part < 8u; part++) {
        if (invocation == part) {
            [[unroll]] for (uint i = part * 32u; i < part * 32u + 32u; i++) QUANT_TABLES[16u + i] = uintBitsToFloat(DYNAMIC_BITS[i]);
        }
    }
#endif
}

float nf4_code(uint code) { return QUANT_TABLES[code]; }
#if QUANT == QUANT_NF4_DOUBLE_QUANT
float dynamic_code(uint q) { return QUANT_TABLES[16u + q]; }
#endif
#else
float nf4_code(uint code) { return uintBitsToFloat(NF4_BITS[code]); }
float dynamic_code(uint q) { return uintBitsToFloat(DYNAMIC_BITS[q]); }
#endif

const uint RUN_LENGTH = 8u;

uint quant_byte(uint byte_index) { return (QWORDS[byte_index >> 2] >> ((byte_index & 3u) * 8u)) & 0xFFu; }

// Sections of an NF4 tensor of n elements, as word offsets.
uint nf4_absmax_word(uint n) { return ceil_div(ceil_div(n, 2u), 4u); }
uint nf4_nested_scale_word(uint n) { return nf4_absmax_word(n) + ceil_div(ceil_div(n, 64u), 4u); }
uint nf4_mean_word(uint n) { return nf4_nested_scale_word(n) + ceil_div(ceil_div(n, 64u), 256u); }

float nf4_absmax(uint block, uint n) {
#if QUANT == QUANT_NF4_DOUBLE_QUANT
    uint q = quant_byte(nf4_absmax_word(n) * 4u + block);
    float scale = uintBitsToFloat(QWORDS[nf4_nested_scale_word(n) + block / 256u]);
    precise float scaled = dynamic_code(q) * scale;
    precise float absmax = scaled + uintBitsToFloat(QWORDS[nf4_mean_word(n)]);
    return absmax;
#else
    return uintBitsToFloat(QWORDS[nf4_absmax_word(n) + block]);
#endif
}

// GGML's block geometry: bytes per block (of 32 elements, K-quants 256), and the byte offsets in it of
// the low bits (qs; Q6_K's ql) and the fifth bits (qh; Q6_K's high two).
#if QUANT == QUANT_Q8_0
const uint GGML_BLOCK_BYTES = 34u, GGML_QS_AT = 2u;
#elif QUANT == QUANT_Q4_0
const uint GGML_BLOCK_BYTES = 18u, GGML_QS_AT = 2u;
#elif QUANT == QUANT_Q4_1
const uint GGML_BLOCK_BYTES = 20u, GGML_QS_AT = 4u;
#elif QUANT == QUANT_Q5_0
const uint GGML_BLOCK_BYTES = 22u, GGML_QH_AT = 2u, GGML_QS_AT = 6u;
#elif QUANT == QUANT_Q5_1
const uint GGML_BLOCK_BYTES = 24u, GGML_QH_AT = 4u, GGML_QS_AT = 8u;
#elif QUANT == QUANT_Q4_K
const uint GGML_BLOCK_BYTES = 144u, GGML_QS_AT = 16u;
#elif QUANT == QUANT_Q5_K
const uint GGML_BLOCK_BYTES = 176u, GGML_QH_AT = 16u, GGML_QS_AT = 48u;
#elif QUANT == QUANT_Q6_K
const uint GGML_BLOCK_BYTES = 210u, GGML_QS_AT = 0u, GGML_QH_AT = 128u;
#endif

// GGML's f16 block scale at byte offset `at` (always even).
float ggml_scale(uint at) {
    uint word = QWORDS[at >> 2];
    return unpackHalf2x16((at & 2u) != 0u ? word >> 16 : word).x;
}

#if QUANT == QUANT_Q4_K || QUANT == QUANT_Q5_K
// Sub-block s's scale d·sc and offset dmin·m in the Q4_K or Q5_K super-block at byte `base`
// (get_scale_min_k4's 6-bit sc and m), each product rounded to f32.
vec2 kquant_scale_min(uint base, uint s) {
    uint sc, m;
    if (s < 4u) {
        sc = quant_byte(base + 4u + s) & 63u;
        m = quant_byte(base + 8u + s) & 63u;
    } else {
        uint packed = quant_byte(base + 8u + s);
        sc = (packed & 15u) | ((quant_byte(base + s) >> 6) << 4);
        m = (packed >> 4) | ((quant_byte(base + 4u + s) >> 6) << 4);
    }
    precise float dl = ggml_scale(base) * float(sc);
    precise float ml = ggml_scale(base + 2u) * float(m);
    return vec2(dl, ml);
}
#endif

// Element i of the quantized tensor (n elements in all).
float dequant(uint i, uint n) {
#if (QUANT == QUANT_NF4 || QUANT == QUANT_NF4_DOUBLE_QUANT)
    uint byte = quant_byte(i >> 1);
    uint code = (i & 1u) == 0u ? byte >> 4 : byte & 15u;
    precise float v = nf4_code(code) * nf4_absmax(i >> 6, n);
    return v;
#elif QUANT == QUANT_Q8_0
    uint base = (i >> 5) * GGML_BLOCK_BYTES;
    int q = int(quant_byte(base + GGML_QS_AT + (i & 31u)) << 24) >> 24;  // sign-extend the int8
    precise float v = float(q) * ggml_scale(base);
    return v;
#elif QUANT == QUANT_Q4_0 || QUANT == QUANT_Q4_1 || QUANT == QUANT_Q5_0 || QUANT == QUANT_Q5_1
    // f16 d, [f16 m], [32-bit qh: bit j is element j's fifth bit], 16 bytes of nibbles (element j
    // low, j + 16 high). Products of a code and d are exact; only `+ m` rounds.
    uint base = (i >> 5) * GGML_BLOCK_BYTES, j = i & 31u;
    uint byte = quant_byte(base + GGML_QS_AT + (j & 15u));
    uint q = j < 16u ? byte & 15u : byte >> 4;
#if QUANT == QUANT_Q5_0 || QUANT == QUANT_Q5_1
    q |= ((quant_byte(base + GGML_QH_AT + (j >> 3)) >> (j & 7u)) & 1u) << 4;
#endif
#if QUANT == QUANT_Q4_0
    precise float v = float(int(q) - 8) * ggml_scale(base);
#elif QUANT == QUANT_Q5_0
    precise float v = float(int(q) - 16) * ggml_scale(base);
#else
    precise float v = float(q) * ggml_scale(base) + ggml_scale(base + 2u);
#endif
    return v;
#elif QUANT == QUANT_Q4_K || QUANT == QUANT_Q5_K
    // Super-blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (get_scale_min_k4),
    // [Q5_K: 32 bytes qh, bit s of byte l the fifth bit of element 32s + l], 128 bytes of nibbles
    // (sub-blocks 2c and 2c + 1 in the low and high nibbles of bytes 32c..32c + 31).
    uint base = (i >> 8) * GGML_BLOCK_BYTES, r = i & 255u, s = r >> 5, l = r & 31u;
    uint q = (quant_byte(base + GGML_QS_AT + 32u * (s >> 1) + l) >> (4u * (s & 1u))) & 15u;
#if QUANT == QUANT_Q5_K
    q |= ((quant_byte(base + GGML_QH_AT + l) >> s) & 1u) << 4;
#endif
    vec2 scale_min = kquant_scale_min(base, s);
    precise float v = scale_min.x * float(q) - scale_min.y;
    return v;
#elif QUANT == QUANT_Q6_K
    // Super-blocks of 256: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d. In each half of 128,
    // element r's low 4 bits are in byte r % 64 of the half's ql (high nibble from r = 64), its high
    // 2 bits at bit 2(r / 32) of byte r % 32 of the half's qh; value d·scale[r / 16]·(q − 32).
    uint base = (i >> 8) * GGML_BLOCK_BYTES, h = (i >> 7) & 1u, r = i & 127u;
    uint low = (quant_byte(base + GGML_QS_AT + 64u * h + (r & 63u)) >> (4u * (r >> 6))) & 15u;
    uint high = (quant_byte(base + GGML_QH_AT + 32u * h + (r & 31u)) >> (2u * (r >> 5))) & 3u;
    int scale = int(quant_byte(base + 192u + 8u * h + (r >> 4)) << 24) >> 24;
    precise float ds = ggml_scale(base + 208u) * float(scale);
    precise float v = ds * float(int(low | (high << 4)) - 32);
    return v;
#endif
}

// The 8 bytes from byte offset `at` (always even: GGML's blocks are 34, 20 and 18 bytes) as two words.
uvec2 quant_bytes8(uint at) {
    uint w = at >> 2;
    uvec2 lo = uvec2(QWORDS[w], QWORDS[w + 1u]);
    if ((at & 2u) == 0u) return lo;
    uint hi = QWORDS[w + 2u];
    return uvec2((lo.x >> 16) | (lo.y << 16), (lo.y >> 16) | (hi << 16));
}

#if QUANT != QUANT_NF4 && QUANT != QUANT_NF4_DOUBLE_QUANT
#define QUANT_QUADS 1
// The 4 bytes from byte offset `at` (always even) as one word.
uint quant_bytes4(uint at) {
    uint w = at >> 2;
    return (at & 2u) == 0u ? QWORDS[w] : (QWORDS[w] >> 16) | (QWORDS[w + 1u] << 16);
}

// The same where the word after `at`'s is in the buffer: both words read and shifted together, without
// quant_bytes4's branch. Which form fits is the compiler's: on RDNA3 the quad-shared matmul under dropout
// on B took 108 VGPRs, not 96, for Q6_K with the branch and for Q8_0 without it.
uint quant_bytes4_within(uint at) {
    uint half_shift = (at & 2u) * 8u;
    return (QWORDS[at >> 2] >> half_shift) | ((QWORDS[(at >> 2) + 1u] << 16) << (16u - half_shift));
}

// Elements i0 … i0 + 3 of a GGML-quantized tensor, i0 a multiple of 4: dequant's four values bit for bit,
// the block's scales decoded once and the codes read a word at a time (as ggml-vulkan's dequant_funcs
// read them), and kept packed, a byte per element, until each is decoded. A GGML tensor's rows are whole
// blocks, of 32 elements or 256, so one block holds the four.
vec4 dequant_quad(uint i0) {
#if QUANT == QUANT_Q4_K || QUANT == QUANT_Q5_K || QUANT == QUANT_Q6_K
    uint base = (i0 >> 8) * GGML_BLOCK_BYTES;
#else
    uint base = (i0 >> 5) * GGML_BLOCK_BYTES, j = i0 & 31u;
#endif
    vec4 v;
#if QUANT == QUANT_Q8_0
    uint codes = quant_bytes4(base + GGML_QS_AT + j);
    float d = ggml_scale(base);
    for (uint e = 0u; e < 4u; e++) {
        precise float x = float(bitfieldExtract(int(codes), int(8u * e), 8)) * d;
        v[e] = x;
    }
#elif QUANT == QUANT_Q4_0 || QUANT == QUANT_Q4_1 || QUANT == QUANT_Q5_0 || QUANT == QUANT_Q5_1
    uint codes = (quant_bytes4(base + GGML_QS_AT + (j & 15u)) >> (j < 16u ? 0u : 4u)) & 0x0F0F0F0Fu;
#if QUANT == QUANT_Q5_0 || QUANT == QUANT_Q5_1
    uint fifth = quant_bytes4(base + GGML_QH_AT) >> j;  // element j + e's fifth bit at bit e
#endif
    float d = ggml_scale(base);
#if QUANT == QUANT_Q4_1 || QUANT == QUANT_Q5_1
    float m = ggml_scale(base + 2u);
#endif
    for (uint e = 0u; e < 4u; e++) {
        uint q = (codes >> (8u * e)) & 15u;
#if QUANT == QUANT_Q5_0 || QUANT == QUANT_Q5_1
        q |= ((fifth >> e) & 1u) << 4;
#endif
#if QUANT == QUANT_Q4_0
        precise float x = float(int(q) - 8) * d;
#elif QUANT == QUANT_Q5_0
        precise float x = float(int(q) - 16) * d;
#else
        precise float x = float(q) * d + m;
#endif
        v[e] = x;
    }
#elif QUANT == QUANT_Q4_K || QUANT == QUANT_Q5_K
    // Blocks and their sections are whole words here, so each quad's codes are one word.
    uint r = i0 & 255u, s = r >> 5, l = r & 31u;
    uint codes = (QWORDS[(base + GGML_QS_AT + 32u * (s >> 1) + l) >> 2] >> (4u * (s & 1u))) & 0x0F0F0F0Fu;
#if QUANT == QUANT_Q5_K
    codes |= ((QWORDS[(base + GGML_QH_AT + l) >> 2] >> s) & 0x01010101u) << 4;
#endif
    vec2 scale_min = kquant_scale_min(base, s);
    for (uint e = 0u; e < 4u; e++) {
        precise float x = scale_min.x * float((codes >> (8u * e)) & 31u) - scale_min.y;
        v[e] = x;
    }
#else
    uint h = (i0 >> 7) & 1u, r = i0 & 127u;
    // Both sections end at least a word before the block does.
    uint low = (quant_bytes4_within(base + GGML_QS_AT + 64u * h + (r & 63u)) >> (4u * (r >> 6))) & 0x0F0F0F0Fu;
    uint high = (quant_bytes4_within(base + GGML_QH_AT + 32u * h + (r & 31u)) >> (2u * (r >> 5))) & 0x03030303u;
    uint codes = low | (high << 4);
    int scale = int(quant_byte(base + 192u + 8u * h + (r >> 4)) << 24) >> 24;
    precise float ds = ggml_scale(base + 208u) * float(scale);
    for (uint e = 0u; e < 4u; e++) {
        precise float x = ds * float(int((codes >> (8u * e)) & 63u) - 32);
        v[e] = x;
    }
#endif
    return v;
}
#endif

#if QUANT == QUANT_NF4 || QUANT == QUANT_NF4_DOUBLE_QUANT || QUANT == QUANT_Q8_0 || QUANT == QUANT_Q4_0 || QUANT == QUANT_Q4_1
#define QUANT_RUN_PACKED 1
// A run of RUN_LENGTH elements as stored: its codes (NF4: 8 nibbles in codes.x, element 2j byte j's high
// nibble; Q8_0: 8 int8 bytes; Q4_0, Q4_1: 8 nibbles, one in the low half of each byte) and its block's
// scale (and Q4_1's offset). Three or four registers where the decoded run takes eight, so that a kernel
// can read runs before a barrier and decode them after it.
struct QuantRun {
    uvec2 codes;
    float scale;
    float offset;
};

// The run of elements i0 … i0 + 7 of the quantized tensor (n elements in all), i0 a multiple of
// RUN_LENGTH: each packed word and the block's scale read once.
QuantRun quant_run_read(uint i0, uint n) {
#if (QUANT == QUANT_NF4 || QUANT == QUANT_NF4_DOUBLE_QUANT)
    return QuantRun(uvec2(QWORDS[i0 >> 3], 0u), nf4_absmax(i0 >> 6, n), 0.0);
#elif QUANT == QUANT_Q8_0
    uint base = (i0 >> 5) * GGML_BLOCK_BYTES;
    return QuantRun(quant_bytes8(base + GGML_QS_AT + (i0 & 31u)), ggml_scale(base), 0.0);
#else
    uint base = (i0 >> 5) * GGML_BLOCK_BYTES, j = i0 & 31u;
    // Elements 0–15 of a block are its 16 bytes' low nibbles, 16–31 their high ones.
    uvec2 codes = (quant_bytes8(base + GGML_QS_AT + (j & 15u)) >> (j < 16u ? 0u : 4u)) & 0x0F0F0F0Fu;
#if QUANT == QUANT_Q4_0
    return QuantRun(codes, ggml_scale(base), 0.0);
#else
    return QuantRun(codes, ggml_scale(base), ggml_scale(base + 2u));
#endif
#endif
}

// Code t of a run: its nibble (NF4, Q4_0, Q4_1) or its int8 byte as an int (Q8_0).
int quant_run_code(QuantRun run, uint t) {
#if (QUANT == QUANT_NF4 || QUANT == QUANT_NF4_DOUBLE_QUANT)
    return int((run.codes.x >> ((t >> 1) * 8u + ((t & 1u) == 0u ? 4u : 0u))) & 15u);
#elif QUANT == QUANT_Q8_0
    return bitfieldExtract(int(run.codes[t >> 2]), int((t & 3u) * 8u), 8);
#else
    return int((run.codes[t >> 2] >> ((t & 3u) * 8u)) & 15u);
#endif
}

// The element of code q in a run.
float quant_run_value(QuantRun run, int q) {
#if (QUANT == QUANT_NF4 || QUANT == QUANT_NF4_DOUBLE_QUANT)
    precise float x = nf4_code(uint(q)) * run.scale;
#elif QUANT == QUANT_Q8_0
    precise float x = float(q) * run.scale;
#elif QUANT == QUANT_Q4_0
    precise float x = float(q - 8) * run.scale;
#else
    precise float x = float(q) * run.scale + run.offset;
#endif
    return x;
}

void quant_run_decode(QuantRun run, out float v[RUN_LENGTH]) {
    for (uint t = 0u; t < RUN_LENGTH; t++) v[t] = quant_run_value(run, quant_run_code(run, t));
}

// The largest magnitude among a run's elements, without decoding them: each format's element is
// monotonic in its code (the NF4 table is sorted), so it is the larger magnitude of the elements of
// the smallest and the largest code (rounding is monotonic too, so this is the decoded elements' own
// maximum, bit for bit).
float quant_run_max(QuantRun run) {
    int lo = quant_run_code(run, 0u), hi = lo;
    for (uint t = 1u; t < RUN_LENGTH; t++) {
        int q = quant_run_code(run, t);
        lo = min(lo, q);
        hi = max(hi, q);
    }
    return max(abs(quant_run_value(run, lo)), abs(quant_run_value(run, hi)));
}
#endif

// Elements i0 … i0 + 7 of the quantized tensor (n elements in all), i0 a multiple of RUN_LENGTH.
void dequant_run(uint i0, uint n, out float v[RUN_LENGTH]) {
#ifdef QUANT_RUN_PACKED
    quant_run_decode(quant_run_read(i0, n), v);
#else
    for (uint t = 0u; t < RUN_LENGTH; t++) v[t] = dequant(i0 + t, n);
#endif
}
