# awk -f check.awk COMMITTED.jsonl CURRENT.jsonl (tools/isa-check.sh): fails (exit 1) when a cooperative-matrix
# variant on NAVI31 has no v_wmma in its main loop, when any variant spills registers, or when a variant's
# subgroups per SIMD fall below the committed table's figure for it (matched by kernel, variant and family).
function field(name,   m) {
  if (match($0, "\"" name "\": *(\"[^\"]*\"|[^,}]*)")) {
    m = substr($0, RSTART, RLENGTH); sub("^\"" name "\": *", "", m); gsub("\"", "", m); return m
  }
  return ""
}
{ key = field("kernel") " [" field("variant") "] on " field("family") }
FNR == NR { committed[key] = field("subgroups_per_simd") + 0; next }
{
  checked++
  if (field("path") == "coopmat" && field("family") == "NAVI31" && (field("main_loop") != "true" || field("wmma") + 0 == 0)) {
    print "isa-check: no v_wmma in the main loop of the cooperative-matrix variant " key; failed++
  }
  if (field("spilled_vgprs") + field("spilled_sgprs") > 0) {
    print "isa-check: " key " spills " field("spilled_vgprs") " VGPRs and " field("spilled_sgprs") " SGPRs"; failed++
  }
  if (!(key in committed)) { fresh++; next }
  if (field("subgroups_per_simd") + 0 < committed[key]) {
    print "isa-check: " key " fits " field("subgroups_per_simd") " subgroups per SIMD, the committed table " committed[key]; failed++
  }
}
END {
  printf "isa-check: %d variant compilations checked, %d failures", checked, failed
  if (fresh) printf "; %d not in the committed table (occupancy unchecked until docs/isa is regenerated)", fresh
  print ""
  exit failed > 0
}
