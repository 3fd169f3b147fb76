# JSON lines of tools/isa-report.sh or tools/isa-peer.sh (flat objects) -> a Markdown table, one row per object.
function field(name,   m) {
  if (match($0, "\"" name "\": *(\"[^\"]*\"|[^,}]*)")) {
    m = substr($0, RSTART, RLENGTH); sub("^\"" name "\": *", "", m); gsub("\"", "", m); return m
  }
  return "–"
}
BEGIN {
  print "| kernel | variant | path | family | VGPRs | SGPRs | spilled V/S | LDS bytes | subgroups/SIMD | instructions | main loop: v_wmma | FMA | LDS loads | global loads | FLOP/LDS byte | FLOP/global byte |"
  print "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
}
{
  loop = field("main_loop") == "true" ? "" : " (no loop)"
  v = field("variant"); gsub(/\|/, "\\|", v)
  printf "| %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %s | %s%s | %s | %s | %s | %s | %s |\n", field("kernel"), v, field("path"), field("family"),
    field("vgprs"), field("sgprs"), field("spilled_vgprs"), field("spilled_sgprs"), field("lds_bytes"), field("subgroups_per_simd"),
    field("instructions"), field("wmma"), loop, field("fma"), field("lds_loads"), field("global_loads"), field("flops_per_lds_byte"), field("flops_per_global_byte")
}
