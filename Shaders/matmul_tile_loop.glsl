// matmul.comp's tiled product over k in [k_begin, k_end), added to acc: load_a(m, k) and load_b(k, n)
// give quads along the operand's contiguous axis, zero from k_end on.

// Two buffers of each operand's tile, k-major ([BK][BM] and [BK][BN]) in quads, each row padded by one
// quad so that the scalar stores of a k-contiguous operand spread over the banks. Each step stores the
// next tile into one while the threads compute on the other: one barrier per step orders both, and no
// registers hold a tile in flight (ggml-vulkan's mul_mm loads its tiles the same way, with two
// barriers), so the large tile fits RDNA2's 80 VGPRs, 12 subgroups per SIMD (docs/isa).
// A tile holds its operand's elements as the operand stores them, 16-bit ones in 16 bits (to_f32x4
// widens them exactly as they are read; ggml-vulkan's tiles are 16-bit too, but it also rounds f32
// operands to f16 for them), unless the load changed them (dequantized, masked or scaled): then in f32.
// Under `medium` (BF16_TILES: MatmulPrecision.medium, the host's choice), a tile that would be f32 is bf16
// instead, each value rounded to nearest even as it is stored, and the sums stay f32: PyTorch's "bfloat16
// internal computations". ggml-vulkan rounds the same values to f16; bf16 keeps f32's range, so no tile
// needs scaling. Both tiles are then 16-bit: 4 FLOPs per LDS byte where f32 tiles give 2 (docs/isa).
#if BF16_TILES
#define F32_TILE_T u16vec4
#else
#define F32_TILE_T vec4
#endif
// An operand's tile type from its quad type: F32_TILE_T for f32 (TILE_OF(vec4)), else the quad type.
#define TILE_vec4 F32_TILE_T
#define TILE_f16vec4 f16vec4
#define TILE_u16vec4 u16vec4
#define TILE_PASTE(T) TILE_##T
#define TILE_OF(T) TILE_PASTE(T)
#if DROPOUT_A || KSCALE
#define A_TILE_T F32_TILE_T
#else
#define A_TILE_T TILE_OF(A_QUAD_T)
#endif
#if B_QUANT != QUANT_NONE || DROPOUT_B
#define B_TILE_T F32_TILE_T
#else
#define B_TILE_T TILE_OF(B_QUAD_T)
#endif
const uint A_ROW = BM / 4 + 1, B_ROW = BN / 4 + 1;
shared A_TILE_T As[2][BK][A_ROW];
shared B_TILE_T Bs[2][BK][B_ROW];

// Whether a tile's elements are 16-bit (a constant the compiler folds).
bool sixteen_bit(vec4 v) { return false; }
bool sixteen_bit(f16vec4 v) { return true; }
bool sixteen_bit(u16vec4 v) { return true; }

// Where A's quad `quad` (along m) of row k is in its tile. A 16-bit tile holds them in the order its threads
// read them, each thread's TM / 4 side by side, and starts each row's at its first 16-byte boundary (a row of
// BM / 4 + 1 8-byte quads starts 8 bytes off one every other row), so that each thread reads its quads in one
// 16-byte load. At their places in the operand ACO paired the reads into ds_read2_b64 with a base register
// per k, 8 VGPRs that beside an f32 B tile (quantized or masked) went over RDNA2's 80: 10 subgroups, not 12.
uint a_slot(uint k, uint quad) {
    return sixteen_bit(A_TILE_T(0)) ? (quad % (BM / TM)) * (TM / 4u) + quad / (BM / TM) + (k & 1u) : quad;
}

// A loaded f32 value into its tile's type: exact, as the value came from that type, or with BF16_TILES
// rounded to bf16 (exact again for a value that was bf16).
void to_tile(out float t, float v) { t = v; }
void to_tile(out float16_t t, float v) { t = float16_t(v); }
#if BF16_TILES
void to_tile(out uint16_t t, float v) { t = f32_to_bf16(v); }
#else
void to_tile(out uint16_t t, float v) { t = uint16_t(floatBitsToUint(v) >> 16); }  // bf16: the top half
#endif
void to_tile(out vec4 t, vec4 v) { t = v; }
void to_tile(out f16vec4 t, vec4 v) { t = f16vec4(v); }
void to_tile(out u16vec4 t, vec4 v) { for (uint e = 0u; e < 4u; e++) to_tile(t[e], v[e]); }

#if QUAD_SHARED_A
// Quad lane t's v, for slot t of column group h: lane q ^ t's in even groups (slot 0 the lane's own, no
// permute), lane t's in odd ones (broadcast). acc_row (matmul.comp) says which rows a slot then holds.
float quad_permute(float v, uint t, uint h) {
    if (h % 2u == 1u) return subgroupQuadBroadcast(v, t);
    if (t == 1u) return subgroupQuadSwapHorizontal(v);
    if (t == 2u) return subgroupQuadSwapVertical(v);
    if (t == 3u) return subgroupQuadSwapDiagonal(v);
    return v;
}
#endif

void accumulate_product(uint m0, uint n0, uint k_begin, uint k_end) {
    uint lid = tile_thread(), tx = lid % (BN / TN), ty = lid / (BN / TN);
    uint steps = (k_end - k_begin + BK - 1u) / BK;
    for (uint step = 0u; step <= steps; step++) {
        uint k0 = k_begin + step * BK;
        if (step < steps) {
            uint buf = step & 1u;
            // Quad q of the tile: along k (A) or m (Aᵀ) as the operand is contiguous; n or k alike for B.
            for (uint i = 0u; i < A_QUADS; i++) {
                uint q = lid + i * THREADS;
                if (q >= BM * BK / 4u) break;
#if TRANS_A
                to_tile(As[buf][q / (BM / 4u)][a_slot(q / (BM / 4u), q % (BM / 4u))], load_a(m0 + 4u * (q % (BM / 4u)), k0 + q / (BM / 4u)));
#else
                uint mm = q / (BK / 4u), kk = 4u * (q % (BK / 4u));
                vec4 v = load_a(m0 + mm, k0 + kk);
                for (uint e = 0u; e < 4u; e++) to_tile(As[buf][kk + e][a_slot(kk + e, mm / 4u)][mm % 4u], v[e]);
#endif
            }
            for (uint i = 0u; i < B_QUADS; i++) {
                uint q = lid + i * THREADS;
                if (q >= BN * BK / 4u) break;
#if TRANS_B
                uint nn = q / (BK / 4u), kk = 4u * (q % (BK / 4u));
                vec4 v = load_b(k0 + kk, n0 + nn);
                for (uint e = 0u; e < 4u; e++) to_tile(Bs[buf][kk + e][nn / 4u][nn % 4u], v[e]);
#else
                to_tile(Bs[buf][q / (BN / 4u)][q % (BN / 4u)], load_b(k0 + q / (BN / 4u), n0 + 4u * (q % (BN / 4u))));
#endif
            }
        }
        if (step > 0u) {
            uint buf = (step - 1u) & 1u;
            // Unrolled in every variant (NIR left it rolled for NF4's bf16 tiles).
            [[unroll]] for (uint kk = 0u; kk < BK; kk++) {
#if QUAD_SHARED_A
                // The quad's four threads compute the same TM rows (tile_thread): each reads TM / 4 of A's
                // values, rows TM / 4 · quad_lane + s, and takes the others' from them by DPP quad permutes,
                // which AMD's compilers fold into the FMAs (v_fmac_f32_dpp). Two patterns (quad_permute),
                // so that no compiler merges the two column groups' permutes into values held through both:
                // each permuted value is used by the 4 FMAs beside it (80 VGPRs on RDNA2, docs/isa). A thread's
                // values sit at a multiple of their count in the quad, one aligned load (ds_read_b64 for f32);
                // groups and rows run backwards so that a value's last use is the thread's own (slot 0, no
                // permute): RDNA2 folds a permute after register allocation, not where it took its source's register.
                uint quad_lane = lid % 4u, g = quad_lane / (16u / TM), first = (quad_lane % (16u / TM)) * (TM / 4u);
                float a[TM / 4u];
                for (uint s = 0u; s < TM / 4u; s++)
                    a[s] = to_f32(As[buf][kk][sixteen_bit(A_TILE_T(0)) ? ty * (TM / 4u) + g + (kk & 1u) : g * (BM / TM) + ty][first + s]);
                for (uint h_ = 0u; h_ < TN / 4u; h_++) {
                    uint h = TN / 4u - 1u - h_;
                    vec4 b = to_f32x4(Bs[buf][kk][h * (BN / TN) + tx]);
                    for (uint i_ = 0u; i_ < TM; i_++) {
                        uint i = TM - 1u - i_;
                        float v = quad_permute(a[i % (TM / 4u)], i / (TM / 4u), h);
                        for (uint j = 0u; j < 4u; j++) acc[i * TN + 4u * h + j] = fma(v, b[j], acc[i * TN + 4u * h + j]);
                    }
                }
#else
                // A's TM values, then B's a quad at a time, each used up before the next is read: what
                // the FMAs hold besides the accumulators is TM + 4 values, not TM + TN.
                // (a_slot(kk, g * (BM / TM) + ty) written out, as the compiler does not know that ty < BM / TM.)
                vec4 a[TM / 4u];
                for (uint g = 0u; g < TM / 4u; g++)
                    a[g] = to_f32x4(As[buf][kk][sixteen_bit(A_TILE_T(0)) ? ty * (TM / 4u) + g + (kk & 1u) : g * (BM / TM) + ty]);
                for (uint h = 0u; h < TN / 4u; h++) {
                    vec4 b = to_f32x4(Bs[buf][kk][h * (BN / TN) + tx]);
                    for (uint j = 0u; j < 4u; j++)
                        for (uint i = 0u; i < TM; i++)
                            acc[i * TN + 4u * h + j] = fma(a[i / 4u][i % 4u], b[j], acc[i * TN + 4u * h + j]);
                }
#endif
            }
        }
        barrier();
    }
}
