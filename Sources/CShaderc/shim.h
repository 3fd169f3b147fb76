#include <shaderc/shaderc.h>
#include <glslang/build_info.h>
