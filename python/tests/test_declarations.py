"""The bindings declare every function of lowrank.h, with the header's number and kinds of
arguments (tools/check_c_header.sh holds the header to the library's Swift)."""
import ctypes
import re

from conftest import REPOSITORY

from lowrank import _native

HEADER = REPOSITORY / "Sources" / "CLowRank" / "lowrank.h"
C_TYPES = {
    "uint64_t": ctypes.c_uint64, "lowrank_engine": ctypes.c_uint64, "lowrank_model": ctypes.c_uint64, "lowrank_tokenizer": ctypes.c_uint64,
    "int64_t": ctypes.c_int64, "int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "size_t": ctypes.c_size_t,
    "float": ctypes.c_float, "double": ctypes.c_double,
}


def header_functions() -> dict:
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    functions = {}
    for result, name, parameters in re.findall(r"^([\w ]+?\**)\s*(lowrank_\w+)\(([^)]*)\);", text, flags=re.M):
        parameters = [] if parameters.strip() == "void" else [" ".join(p.split()) for p in parameters.split(",")]
        functions[name] = (result.strip(), parameters)
    return functions


def ctypes_kind(parameter: str):
    """The ctypes type a C parameter declaration needs (char pointers as c_char_p)."""
    declaration = re.sub(r"\bconst\b", "", parameter)
    if re.search(r"\[\d+\]$", declaration):  # an array parameter is a pointer
        declaration = re.sub(r"\s*\w+\[\d+\]$", " *", declaration)
    else:
        declaration = re.sub(r"\s*\w+$", "", declaration)
    base, stars = declaration.replace("*", "").strip(), declaration.count("*")
    if base == "char" and stars == 1:
        return ctypes.c_char_p
    return base, stars


def test_every_function_is_declared_as_the_header_says():
    functions = header_functions()
    assert len(functions) > 20
    for name, (result, parameters) in functions.items():
        function = getattr(_native.lib, name)
        if name in ("lowrank_abi_version",):
            continue  # declared before the version check, with no arguments
        assert function.argtypes is not None, f"{name} is not declared"
        assert len(function.argtypes) == len(parameters), f"{name}: {len(function.argtypes)} arguments, the header {len(parameters)}"
        for declared, parameter in zip(function.argtypes, parameters):
            kind = ctypes_kind(parameter)
            if kind is ctypes.c_char_p:
                assert declared is ctypes.c_char_p, f"{name}({parameter})"
                continue
            base, stars = kind
            if stars == 0:
                assert declared is C_TYPES[base], f"{name}({parameter}): declared {declared}"
            else:
                assert issubclass(declared, ctypes._Pointer) or declared is ctypes.c_char_p, f"{name}({parameter}): declared {declared}"
                target = declared._type_
                expected = C_TYPES.get(base) or getattr(_native, "".join(w.title() for w in base.split("_")[1:]), None)
                assert target is expected, f"{name}({parameter}): points to {target}, not {expected}"
        expected_result = ctypes.c_char_p if result == "const char *" else C_TYPES[result]
        assert function.restype is expected_result, f"{name} returns {function.restype}, the header {result}"
