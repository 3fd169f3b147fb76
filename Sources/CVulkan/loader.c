#define CVK_IMPLEMENTATION
#include "CVulkan.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define CVK_DEFINE(name) CVK_HIDDEN PFN_##name name = NULL;
CVK_GLOBAL_FUNCTIONS(CVK_DEFINE)
CVK_INSTANCE_FUNCTIONS(CVK_DEFINE)
CVK_DEVICE_FUNCTIONS(CVK_DEFINE)
#undef CVK_DEFINE

static PFN_vkGetInstanceProcAddr cvk_get_instance_proc_addr = NULL;
static char cvk_error[512];

int cvk_load(const char *path) {
    if (cvk_get_instance_proc_addr) return 0;
    const char *name = path ? path : "libvulkan.so.1";
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(cvk_error, sizeof cvk_error, "%s", dlerror());
        return -1;
    }
    cvk_get_instance_proc_addr = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
    if (!cvk_get_instance_proc_addr) {
        snprintf(cvk_error, sizeof cvk_error, "%s has no vkGetInstanceProcAddr", name);
        dlclose(lib);
        return -1;
    }
#define CVK_LOAD_GLOBAL(fn) fn = (PFN_##fn)cvk_get_instance_proc_addr(NULL, #fn);
    CVK_GLOBAL_FUNCTIONS(CVK_LOAD_GLOBAL)
#undef CVK_LOAD_GLOBAL
    if (!vkCreateInstance) {
        snprintf(cvk_error, sizeof cvk_error, "%s does not provide vkCreateInstance", name);
        return -1;
    }
    return 0;
}

/* The loader's trampolines dispatch through each handle's own table, so a pointer fetched for one
 * instance serves every instance. Only missing pointers are filled: a later instance never rewrites
 * one that another thread may be calling (and one without validation leaves the debug-utils entry
 * points of one with it in place). */
void cvk_load_instance(VkInstance instance) {
#define CVK_LOAD_INSTANCE(fn) if (!fn) fn = (PFN_##fn)cvk_get_instance_proc_addr(instance, #fn);
    CVK_INSTANCE_FUNCTIONS(CVK_LOAD_INSTANCE)
    CVK_DEVICE_FUNCTIONS(CVK_LOAD_INSTANCE)
#undef CVK_LOAD_INSTANCE
}

const char *cvk_last_error(void) { return cvk_error; }
