// radvstats [--meta JSON] [--spec ID=VALUE,...] [--subgroup N] [--isa-dir DIR] FILE.spv...: compiles compute SPIR-V with the
// first Vulkan device (isa-report.sh points it at RADV's null device for a real AMD GPU) and prints one JSON object
// per shader and line: the driver's statistics (VK_KHR_pipeline_executable_properties: registers, spills, LDS,
// subgroups per SIMD, instructions) and counts read from its machine code (the "Assembly" internal representation)
// over the main loop. Options apply to the files after them: --spec sets specialization constants (4-byte values,
// as ggml-vulkan sets its tile sizes), --subgroup a required subgroup size (0: the driver's choice), --isa-dir
// writes each shader's assembly to DIR/<file name>.<family>.s; --meta gives JSON members ("kernel": "matmul", ...) that
// start the next file's object.
//
// Derived from ../shared/tools/isa-stats/radvstats.c (the project's isa-stats tool): same device set-up; added
// specialization constants, required subgroup sizes, the device's whole push-constant range, and the analysis of
// the assembly below.
//
// The main loop: every backward branch (s_branch / s_cbranch_* to a label above it) closes a loop from that label
// to the branch. The main loop is the one with the most math instructions (v_wmma_*, and scalar FMAs: v_fma*,
// v_fmac*, v_pk_fma*, v_dot2*, each half of a VOPD pair), the outermost of equals, so an inner loop the compiler
// kept rolled counts once inside the K-step loop that feeds it. Its FLOPs per wave: 8192 per v_wmma (16x16x16) and,
// per lane, 2 per FMA (4 per packed or dot2 FMA) times the wave size; its bytes per wave: each LDS load's (ds_load*,
// ds_read*) or global load's (buffer_load*, global_load*; scalar loads not counted) width times the wave size.
// flops_per_lds_byte and flops_per_global_byte are their ratios (null where the loop has no such load). A shader
// with no math in any loop is measured whole (main_loop false).
#include <vulkan/vulkan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

typedef struct { VkStructureType sType; void *pNext; VkBool32 cooperativeMatrix; VkBool32 cooperativeMatrixRobustBufferAccess; } CoopFeatures;  /* VK_KHR_cooperative_matrix, newer than bookworm's headers */
#define COOP_FEATURES_STYPE ((VkStructureType)1000506000)
#define CHECK(x) do { VkResult r_ = (x); if (r_ != VK_SUCCESS) { fprintf(stderr, "%s failed: %d\n", #x, r_); exit(1); } } while (0)

typedef struct { long wmma, fma, lds_loads, global_loads, lane_flops, lds_bytes, global_bytes; } Counts;

/* The mnemonic without its encoding suffix (_e32, _e64, _dpp, _sdwa). */
static void base_name(const char *m, size_t n, char *out, size_t cap) {
    if (n >= cap) n = cap - 1;
    memcpy(out, m, n); out[n] = 0;
    const char *suffixes[] = { "_e32", "_e64", "_dpp", "_sdwa" };
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(out), s = strlen(suffixes[i]);
        if (l > s && !strcmp(out + l - s, suffixes[i])) out[l - s] = 0;
    }
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* Bytes per lane of a load mnemonic: b32/dword 4, x2/b64 8, x3/b96 12, x4/b128 16, u8/i8/byte 1, u16/i16/short 2; doubled for read2/2addr. */
static long load_width(const char *m) {
    long w = 4;
    if (strstr(m, "b128") || strstr(m, "dwordx4") || strstr(m, "xyzw")) w = 16;
    else if (strstr(m, "b96") || strstr(m, "dwordx3") || strstr(m, "xyz")) w = 12;
    else if (strstr(m, "b64") || strstr(m, "dwordx2") || strstr(m, "_xy")) w = 8;
    else if (strstr(m, "u16") || strstr(m, "i16") || strstr(m, "short") || strstr(m, "d16")) w = 2;
    else if (strstr(m, "u8") || strstr(m, "i8") || strstr(m, "byte")) w = 1;
    if (strstr(m, "2addr") || starts(m, "ds_read2")) w *= 2;
    return w;
}

/* Adds one mnemonic to c. */
static void classify(const char *m, Counts *c) {
    if (starts(m, "v_wmma_")) { c->wmma++; return; }
    if (starts(m, "v_pk_fma") || starts(m, "v_dot2")) { c->fma++; c->lane_flops += 4; return; }
    if (starts(m, "v_fma") || starts(m, "v_dual_fma") || starts(m, "v_mac_f32") || starts(m, "v_mad_f32")) { c->fma++; c->lane_flops += 2; return; }
    if (starts(m, "ds_load") || starts(m, "ds_read")) { c->lds_loads++; c->lds_bytes += load_width(m); return; }
    if (starts(m, "buffer_load") || starts(m, "global_load") || starts(m, "tbuffer_load")) { c->global_loads++; c->global_bytes += load_width(m); }
}

/* The mnemonics of one assembly line (two for a VOPD pair "a ... :: b ..."), classified into c. */
static void count_line(const char *line, Counts *c) {
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *e = p; while (*e && !isspace((unsigned char)*e)) e++;
        char m[64]; base_name(p, (size_t)(e - p), m, sizeof m);
        classify(m, c);
        const char *pair = strstr(e, "::");
        if (!pair) return;
        p = pair + 2;
    }
}

typedef struct { char **lines; int n; } Lines;

static Lines split_lines(char *text) {
    Lines l = { NULL, 0 }; int cap = 0;
    for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) {
        if (l.n == cap) { cap = cap ? cap * 2 : 1024; l.lines = realloc(l.lines, cap * sizeof *l.lines); }
        l.lines[l.n++] = s;
    }
    return l;
}

/* The line index of label "NAME:", or -1. */
static int label_index(const Lines *l, const char *name, size_t n) {
    for (int i = 0; i < l->n; i++) if (!strncmp(l->lines[i], name, n) && l->lines[i][n] == ':') return i;
    return -1;
}

static Counts count_range(const Lines *l, int from, int to) {
    Counts c = { 0 };
    for (int i = from; i <= to; i++) if (isspace((unsigned char)l->lines[i][0])) count_line(l->lines[i], &c);
    return c;
}

/* The main loop's counts; *in_loop says whether one was found (else the whole shader's). */
static Counts main_loop(char *assembly, int *in_loop) {
    Lines l = split_lines(assembly);
    int best_from = 0, best_to = l.n - 1; long best_math = 0; *in_loop = 0;
    for (int i = 0; i < l.n; i++) {
        const char *p = l.lines[i]; while (*p == ' ' || *p == '\t') p++;
        if (!starts(p, "s_branch ") && !starts(p, "s_cbranch_")) continue;
        const char *t = p; while (*t && !isspace((unsigned char)*t)) t++; while (*t == ' ') t++;
        size_t n = 0; while (t[n] && !isspace((unsigned char)t[n]) && t[n] != ',') n++;
        int target = label_index(&l, t, n);
        if (target < 0 || target >= i) continue;
        Counts c = count_range(&l, target, i);
        long math = c.wmma + c.fma;
        if (math > best_math || (math == best_math && math > 0 && i - target > best_to - best_from)) {
            best_math = math; best_from = target; best_to = i; *in_loop = 1;
        }
    }
    Counts c = count_range(&l, best_from, best_to);
    free(l.lines);
    return c;
}

static void print_ratio(const char *name, double flops, long bytes) {
    if (bytes > 0) printf(",\"%s\":%.3f", name, flops / (double)bytes); else printf(",\"%s\":null", name);
}

int main(int argc, char **argv) {
    VkApplicationInfo ai = { .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .apiVersion = VK_API_VERSION_1_3 };
    VkInstanceCreateInfo ici = { .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &ai };
    VkInstance inst; CHECK(vkCreateInstance(&ici, NULL, &inst));
    uint32_t n = 1; VkPhysicalDevice pd; vkEnumeratePhysicalDevices(inst, &n, &pd);
    VkPhysicalDeviceProperties pp; vkGetPhysicalDeviceProperties(pd, &pp);
    uint32_t ne = 0; vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, NULL);
    VkExtensionProperties *ex = calloc(ne, sizeof *ex); vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, ex);
    int coop = 0;
    for (uint32_t i = 0; i < ne; i++) if (!strcmp(ex[i].extensionName, "VK_KHR_cooperative_matrix")) coop = 1;
    /* "Null hardware (RADV NAVI31)" -> NAVI31 */
    char family[64] = "unknown"; const char *fp = strstr(pp.deviceName, "RADV ");
    if (fp) { snprintf(family, sizeof family, "%s", fp + 5); char *close = strchr(family, ')'); if (close) *close = 0; }
    const char *exts[2]; uint32_t nx = 0; exts[nx++] = "VK_KHR_pipeline_executable_properties"; if (coop) exts[nx++] = "VK_KHR_cooperative_matrix";
    CoopFeatures cm = { .sType = COOP_FEATURES_STYPE, .cooperativeMatrix = coop };
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pe = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR, .pNext = coop ? &cm : NULL, .pipelineExecutableInfo = VK_TRUE };
    VkPhysicalDeviceVulkan13Features v13 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, .pNext = &pe, .maintenance4 = VK_TRUE, .subgroupSizeControl = VK_TRUE, .computeFullSubgroups = VK_TRUE };
    VkPhysicalDeviceVulkan12Features v12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, .pNext = &v13, .shaderFloat16 = VK_TRUE, .storageBuffer8BitAccess = VK_TRUE, .uniformAndStorageBuffer8BitAccess = VK_TRUE, .vulkanMemoryModel = VK_TRUE, .vulkanMemoryModelDeviceScope = VK_TRUE, .shaderInt8 = VK_TRUE };
    VkPhysicalDeviceVulkan11Features v11 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &v12, .storageBuffer16BitAccess = VK_TRUE, .uniformAndStorageBuffer16BitAccess = VK_TRUE };
    VkPhysicalDeviceFeatures2 f2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &v11, .features.shaderInt64 = VK_TRUE, .features.shaderInt16 = VK_TRUE };
    float prio = 1; VkDeviceQueueCreateInfo q = { .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueCount = 1, .pQueuePriorities = &prio };
    VkDeviceCreateInfo dci = { .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f2, .queueCreateInfoCount = 1, .pQueueCreateInfos = &q, .enabledExtensionCount = nx, .ppEnabledExtensionNames = exts };
    VkDevice d; CHECK(vkCreateDevice(pd, &dci, NULL, &d));
    VkDescriptorSetLayoutBinding b[16];
    for (int i = 0; i < 16; i++) b[i] = (VkDescriptorSetLayoutBinding){ .binding = i, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT };
    VkDescriptorSetLayoutCreateInfo dl = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 16, .pBindings = b };
    // Set 1 is the engine's per-step scalars buffer (Shaders/step_scalars.glsl), bound to every pipeline.
    VkDescriptorSetLayoutCreateInfo sl = { .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = 1, .pBindings = b };
    VkDescriptorSetLayout dsl[2]; CHECK(vkCreateDescriptorSetLayout(d, &dl, NULL, &dsl[0])); CHECK(vkCreateDescriptorSetLayout(d, &sl, NULL, &dsl[1]));
    VkPushConstantRange pr = { VK_SHADER_STAGE_COMPUTE_BIT, 0, pp.limits.maxPushConstantsSize };
    VkPipelineLayoutCreateInfo pl = { .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 2, .pSetLayouts = dsl, .pushConstantRangeCount = 1, .pPushConstantRanges = &pr };
    VkPipelineLayout layout; CHECK(vkCreatePipelineLayout(d, &pl, NULL, &layout));
    PFN_vkGetPipelineExecutablePropertiesKHR gp = (void *)vkGetDeviceProcAddr(d, "vkGetPipelineExecutablePropertiesKHR");
    PFN_vkGetPipelineExecutableStatisticsKHR gs = (void *)vkGetDeviceProcAddr(d, "vkGetPipelineExecutableStatisticsKHR");
    PFN_vkGetPipelineExecutableInternalRepresentationsKHR gr = (void *)vkGetDeviceProcAddr(d, "vkGetPipelineExecutableInternalRepresentationsKHR");

    VkSpecializationMapEntry entries[64]; uint32_t values[64]; uint32_t nspec = 0, subgroup = 0; const char *isa_dir = NULL, *meta = NULL;
    int failed = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--spec") && a + 1 < argc) {
            nspec = 0;
            for (char *s = strtok(argv[++a], ","); s && nspec < 64; s = strtok(NULL, ",")) {
                unsigned id, v;
                if (sscanf(s, "%u=%u", &id, &v) != 2) { fprintf(stderr, "radvstats: bad --spec entry %s\n", s); return 2; }
                entries[nspec] = (VkSpecializationMapEntry){ id, nspec * 4, 4 }; values[nspec++] = v;
            }
            continue;
        }
        if (!strcmp(argv[a], "--subgroup") && a + 1 < argc) { subgroup = (uint32_t)atoi(argv[++a]); continue; }
        if (!strcmp(argv[a], "--isa-dir") && a + 1 < argc) { isa_dir = argv[++a]; continue; }
        if (!strcmp(argv[a], "--meta") && a + 1 < argc) { meta = argv[++a]; continue; }
        FILE *f = fopen(argv[a], "rb"); if (!f) { perror(argv[a]); failed = 1; continue; }
        fseek(f, 0, SEEK_END); long sz = ftell(f); fseek(f, 0, SEEK_SET); uint32_t *code = malloc(sz);
        if (fread(code, 1, sz, f) != (size_t)sz) { perror(argv[a]); failed = 1; fclose(f); continue; }
        fclose(f);
        VkShaderModuleCreateInfo smi = { .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = sz, .pCode = code };
        VkShaderModule sm; CHECK(vkCreateShaderModule(d, &smi, NULL, &sm));
        VkSpecializationInfo si = { nspec, entries, nspec * 4, values };
        VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rs = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO, .requiredSubgroupSize = subgroup };
        VkComputePipelineCreateInfo cpi = { .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            .flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR | VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR,
            .stage = { .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .pNext = subgroup ? &rs : NULL,
                       .flags = subgroup ? VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT : 0,
                       .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = sm, .pName = "main", .pSpecializationInfo = nspec ? &si : NULL },
            .layout = layout };
        VkPipeline p; VkResult r = vkCreateComputePipelines(d, VK_NULL_HANDLE, 1, &cpi, NULL, &p);
        if (r != VK_SUCCESS) { fprintf(stderr, "radvstats: %s: pipeline creation failed (%d)\n", argv[a], r); failed = 1; meta = NULL; continue; }
        VkPipelineExecutableInfoKHR ei = { .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, .pipeline = p, .executableIndex = 0 };
        VkPipelineInfoKHR pik = { .sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, .pipeline = p };
        uint32_t nexe = 1; VkPipelineExecutablePropertiesKHR props = { .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR };
        gp(d, &pik, &nexe, &props);
        uint32_t ns = 0; gs(d, &ei, &ns, NULL);
        VkPipelineExecutableStatisticKHR *st = calloc(ns, sizeof *st);
        for (uint32_t i = 0; i < ns; i++) st[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
        gs(d, &ei, &ns, st);
        const char *names[][2] = { { "VGPRs", "vgprs" }, { "SGPRs", "sgprs" }, { "Spilled VGPRs", "spilled_vgprs" }, { "Spilled SGPRs", "spilled_sgprs" },
                                   { "LDS size", "lds_bytes" }, { "Scratch size", "scratch_bytes" }, { "Subgroups per SIMD", "subgroups_per_simd" }, { "Instructions", "instructions" } };
        const char *name = strrchr(argv[a], '/'); name = name ? name + 1 : argv[a];
        printf("{%s%s\"file\":\"%s\",\"family\":\"%s\",\"wave\":%u", meta ? meta : "", meta ? "," : "", name, family, props.subgroupSize);
        meta = NULL;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            for (uint32_t i = 0; i < ns; i++)
                if (!strcmp(st[i].name, names[k][0]) && st[i].format == VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR)
                    printf(",\"%s\":%llu", names[k][1], (unsigned long long)st[i].value.u64);
        }
        uint32_t nr = 0; gr(d, &ei, &nr, NULL);
        VkPipelineExecutableInternalRepresentationKHR *ir = calloc(nr, sizeof *ir);
        for (uint32_t i = 0; i < nr; i++) ir[i].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR;
        gr(d, &ei, &nr, ir);
        for (uint32_t i = 0; i < nr; i++) ir[i].pData = ir[i].dataSize ? malloc(ir[i].dataSize) : NULL;
        gr(d, &ei, &nr, ir);
        char *assembly = NULL;
        for (uint32_t i = 0; i < nr; i++) if (!strcmp(ir[i].name, "Assembly") && ir[i].pData) assembly = ir[i].pData;
        if (!assembly) { fprintf(stderr, "radvstats: %s: the driver gave no assembly\n", argv[a]); failed = 1; printf("}\n"); continue; }
        if (isa_dir) {
            char path[4096]; snprintf(path, sizeof path, "%s/%s.%s.s", isa_dir, name, family);
            FILE *o = fopen(path, "w"); if (o) { fputs(assembly, o); fclose(o); }
        }
        int in_loop; Counts c = main_loop(assembly, &in_loop);
        double flops = 8192.0 * c.wmma + (double)c.lane_flops * props.subgroupSize;
        printf(",\"main_loop\":%s,\"wmma\":%ld,\"fma\":%ld,\"lds_loads\":%ld,\"global_loads\":%ld",
               in_loop ? "true" : "false", c.wmma, c.fma, c.lds_loads, c.global_loads);
        print_ratio("flops_per_lds_byte", flops, c.lds_bytes * (long)props.subgroupSize);
        print_ratio("flops_per_global_byte", flops, c.global_bytes * (long)props.subgroupSize);
        printf("}\n");
        for (uint32_t i = 0; i < nr; i++) free(ir[i].pData);
        free(ir); free(st); free(code);
        vkDestroyPipeline(d, p, NULL); vkDestroyShaderModule(d, sm, NULL);
    }
    return failed;
}
