// Which keys a query row sees in causal attention over sequences packed along T (AttentionOptions
// in Op.swift; CPUBackend+AttentionBlocks.swift is the CPU's twin), for every attention shader:
// row `row` sees key rows attention_sequence_start(row) through row + past (past: a KV cache's
// rows before the first query; 0 in training). Sequences are runs of `sequence` rows; a packed
// attention (SEQUENCE_STARTS defined, with SEQUENCE_STARTS_BINDING the binding of its starts
// [T] i32) splits them further where a row's start is the row itself. Starts never decrease, so
// the first key any row of a query tile sees is its first row's start, and once a query tile's
// first row starts after a key tile's last key, neither it nor any later query tile sees that
// key tile: whole tiles are skipped by these two bounds, masks inside a tile are per element.
#ifdef SEQUENCE_STARTS
layout(std430, binding = SEQUENCE_STARTS_BINDING) readonly buffer SequenceStartsBuf { int sequence_starts[]; };
#endif

// The first row of row `row`'s sequence; a packed start outside the row's run of `sequence` rows
// (bad input, which the CPU refuses) is clamped into it.
uint attention_sequence_start(uint row, uint sequence) {
    uint run = row / sequence * sequence;
#ifdef SEQUENCE_STARTS
    return uint(clamp(sequence_starts[row], int(run), int(row)));
#else
    return run;
#endif
}

// Whether query row `row` sees key row `key`.
bool attention_visible(uint row, uint key, uint sequence, uint past) {
    return key <= row + past && key >= attention_sequence_start(row, sequence);
}

// The first key row that a query tile whose first row is `first_row` sees.
uint attention_first_key(uint first_row, uint sequence) { return attention_sequence_start(first_row, sequence); }

// Whether a query tile whose first row is `first_row` sees any key up to `last_key`; false for it
// means false for every later tile too.
bool attention_tile_sees(uint first_row, uint last_key, uint sequence) { return attention_sequence_start(first_row, sequence) <= last_key; }
