# JSON lines of tools/isa-report.sh and tools/isa-peer.sh -> one Markdown row per kernel, path and family: how many
# variants, and the range (min–max) of each figure over them. Rows come out unsorted; tools/isa-summary.sh orders them.
function field(name,   m) {
  if (match($0, "\"" name "\": *(\"[^\"]*\"|[^,}]*)")) {
    m = substr($0, RSTART, RLENGTH); sub("^\"" name "\": *", "", m); gsub("\"", "", m); return m
  }
  return ""
}
function span(key, name, v) {
  if (v == "" || v == "null") { nulls[key, name] = 1; return }
  v += 0
  if (!((key, name) in lo) || v < lo[key, name]) lo[key, name] = v
  if (!((key, name) in hi) || v > hi[key, name]) hi[key, name] = v
}
function range(key, name,   a, b) {
  if (!((key, name) in lo)) return "–"
  a = lo[key, name]; b = hi[key, name]
  a = (a == int(a)) ? a : sprintf("%.2f", a); b = (b == int(b)) ? b : sprintf("%.2f", b)
  return (a == b ? a : a "–" b) (((key, name) in nulls) ? " (some –)" : "")
}
{
  key = field("kernel") "|" field("path") "|" field("family")
  if (!(key in count)) keys[++n] = key
  count[key]++
  spills[key] += field("spilled_vgprs") + field("spilled_sgprs")
  if (field("main_loop") != "true") noloop[key]++
  split("vgprs subgroups_per_simd lds_bytes wmma fma flops_per_lds_byte flops_per_global_byte", names, " ")
  for (i = 1; i <= 7; i++) span(key, names[i], field(names[i]))
}
END {
  for (i = 1; i <= n; i++) {
    k = keys[i]; split(k, part, "|")
    printf "| %s | %s | %s | %d | %s | %s | %d | %s | %s | %s | %s | %s |\n", part[1], part[2], part[3], count[k],
      range(k, "vgprs"), range(k, "subgroups_per_simd"), spills[k], range(k, "lds_bytes"), range(k, "wmma"), range(k, "fma"),
      range(k, "flops_per_lds_byte"), range(k, "flops_per_global_byte")
  }
}
