// shrink_gemm: the shrink of shrink.wgsl as a register-blocked GEMM for prefill tiles on a GPU of
// many multiprocessors (tiles 'discrete'): h[e, s, r] = sum_k A[slot_e][s][r][k] * x[row_e][k],
// an (entries x rank) = (entries x in) . (rank x in)^T product per tile of one slot.
// Preconditions: inFeatures % 4 == 0 (x rows and A rows are read as vec4).
//
// Tiling. Workgroup (rank tile = wg.x, tile = wg.y, slice + S * kg = wg.z) computes (TM entries of
// one slot) x (RT rank rows) over the kg-th of KG contiguous k chunks, with (TM / BM) x (RT / BR)
// threads. Per block of KB k the workgroup copies the tile's x rows and its RT rows of A into
// workgroup memory with coalesced vec4 loads (16-bit weights decoded to f32 once, read as u32
// pairs); the loads of the next block are issued into registers before the current block is
// used (a workgroup's k loop is serial: without that, each block waits for its loads, H200: 3 us
// a block). Thread (te, tr) adds the dot products of its BM entries (te, te + TM/BM, ...) and
// BR rank rows (tr, tr + RT/BR, ...): BM + BR vec4 reads per 4 * BM * BR multiply-adds. Rows of
// the staged blocks are padded by one vec4, so the threads of a subgroup reading one column of
// different rows hit different banks. Each sum runs over k in order: the same bits every run. The
// KG partials go to partial kg of h (p.hPart elements apart); the expand adds them in a fixed
// order (no atomics).
//
// Slices merged (RS > 0, a stacked layer such as qkv at a low rank): the workgroup's RT rows run
// over the rank rows of every slice, row i of the axis being rank row i % RS of slice i / RS, and
// wg.z is kg alone. The tile's x block is then read once for all slices instead of once per slice
// (RS = 0: RT rank rows of slice wg.z % S).

//@params (shaders/params.wgsl)

override TM: u32 = 64u;  // entries per workgroup (the tile, tileM)
override RT: u32 = 16u;  // rank rows per workgroup
override BM: u32 = 4u;   // entries per thread (TM % BM == 0, <= 8)
override BR: u32 = 4u;   // rank rows per thread (RT % BR == 0; BM * BR <= 32)
override KB: u32 = 32u;  // k per staged block (a multiple of 4; TM * KB / 4 and RT * KB / 4 <= 8 * threads)
override KG: u32 = 1u;   // k chunks over workgroups (split-K across wg.z)
override RS: u32 = 0u;   // > 0: slices merged, RS rows per slice (RT = S * RS at most; see above)
const MAX_ACC: u32 = 32u;
const MAX_STAGE: u32 = 8u; // vec4s each thread stages per block, of x and of A

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [T * inFeatures / 4]
// A: [maxAdapters * S * maxRank * inStride] weights in the layer dtype, read 4 at a time
//@weights4
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>; // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;    // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(5) var<storage, read_write> h: array<f32>;     // [KG * N * S * rankStride]

override QB: u32 = KB / 4u;      // vec4s of a staged row (not set by the host)
override QP: u32 = QB + 1u;      // their stride: one vec4 of padding (not set by the host)
override NT: u32 = (TM / BM) * (RT / BR); // threads (not set by the host)
override SX: u32 = (TM * QB + NT - 1u) / NT; // vec4s of x each thread stages per block (not set by the host)
override SA: u32 = (RT * QB + NT - 1u) / NT; // vec4s of A each thread stages per block (not set by the host)
var<workgroup> xs: array<vec4<f32>, TM * QP>; // [entry][k / 4]
var<workgroup> ws: array<vec4<f32>, RT * QP>; // [rank row][k / 4]
var<workgroup> wRank: u32;

// (slice, rank row) of row i of the workgroup's rank axis, or x = -1 where it has none (past the
// slot's rank, or past the slices)
fn rowOf(i: u32, s: u32, rank: u32) -> vec2<i32> {
  if (RS == 0u) { return select(vec2<i32>(-1), vec2<i32>(i32(s), i32(i)), i < rank); }
  let rs = max(RS, 1u); // (RS 0 never gets here; a constant divisor of 0 would not compile)
  let r = i % rs;
  return select(vec2<i32>(-1), vec2<i32>(i32(i / rs), i32(r)), r < rank && i / rs < p.numSlices);
}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let NE = TM / BM; // entry threads
  let NR = RT / BR; // rank threads
  let merged = RS > 0u;
  let s = select(wg.z % p.numSlices, 0u, merged);
  let kg = select(wg.z / p.numSlices, wg.z, merged);
  let r0 = wg.x * RT;
  let tb = p.tilesOffset + wg.y * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  if (lid == 0u) { wRank = slots[slot].x; }
  let rank = workgroupUniformLoad(&wRank);
  if (!merged && r0 >= rank) { return; } // a rank tile past this slot's rank: nothing to do
  let q4 = p.inFeatures / 4u;
  // this workgroup's chunk [qb, qe) of vec4s of the k axis
  let cq = (q4 + KG - 1u) / KG;
  let qb = min(q4, kg * cq);
  let qe = min(q4, qb + cq);
  let aSlot = (slot - p.slotBase) * p.numSlices;
  let tr = lid % NR;
  let te = lid / NR;

  // what this thread stages: element lid + j * NT of the x block ([entry][k / 4]) and of the A
  // block ([rank row][k / 4]); the start of its row, or -1 for rows past the tile or the rank
  var xo: array<i32, MAX_STAGE>;
  var ao: array<i32, MAX_STAGE>;
  for (var j = 0u; j < max(SX, SA); j++) {
    let i = lid + j * NT;
    let e = i / QB;
    xo[j] = -1;
    ao[j] = -1;
    if (i < TM * QB && e < count) { xo[j] = i32(u32(callMeta[p.rowsOffset + first + e]) * q4); }
    if (i < RT * QB) {
      let row = rowOf(r0 + e, s, rank);
      if (row.x >= 0) { ao[j] = i32(((aSlot + u32(row.x)) * p.maxRank + u32(row.y)) * p.inStride); }
    }
  }
  var xr: array<vec4<f32>, MAX_STAGE>;
  var ar: array<vec4<f32>, MAX_STAGE>;
  for (var j = 0u; j < SX; j++) {
    let c = qb + (lid + j * NT) % QB;
    xr[j] = vec4<f32>(0.0);
    if (xo[j] >= 0 && c < qe) { xr[j] = x[u32(xo[j]) + c]; }
  }
  for (var j = 0u; j < SA; j++) {
    let c = qb + (lid + j * NT) % QB;
    ar[j] = vec4<f32>(0.0);
    if (ao[j] >= 0 && c < qe) { ar[j] = load4(u32(ao[j]) + 4u * c); }
  }

  var acc: array<f32, MAX_ACC>; // [entry u][rank row v] at u * BR + v
  for (var b = qb; b < qe; b += QB) {
    for (var j = 0u; j < SX; j++) {
      let i = lid + j * NT;
      if (i < TM * QB) { xs[(i / QB) * QP + i % QB] = xr[j]; }
    }
    for (var j = 0u; j < SA; j++) {
      let i = lid + j * NT;
      if (i < RT * QB) { ws[(i / QB) * QP + i % QB] = ar[j]; }
    }
    workgroupBarrier();
    // the next block's loads, in flight while this one is used
    let nb = b + QB;
    for (var j = 0u; j < SX; j++) {
      let c = nb + (lid + j * NT) % QB;
      xr[j] = vec4<f32>(0.0);
      if (xo[j] >= 0 && c < qe) { xr[j] = x[u32(xo[j]) + c]; }
    }
    for (var j = 0u; j < SA; j++) {
      let c = nb + (lid + j * NT) % QB;
      ar[j] = vec4<f32>(0.0);
      if (ao[j] >= 0 && c < qe) { ar[j] = load4(u32(ao[j]) + 4u * c); }
    }
    for (var c = 0u; c < QB; c++) {
      var xv: array<vec4<f32>, 8>;
      for (var u = 0u; u < BM; u++) { xv[u] = xs[(te + u * NE) * QP + c]; }
      for (var v = 0u; v < BR; v++) {
        let a = ws[(tr + v * NR) * QP + c];
        for (var u = 0u; u < BM; u++) { acc[u * BR + v] += dot(xv[u], a); }
      }
    }
    workgroupBarrier();
  }
  for (var u = 0u; u < BM; u++) {
    let e = te + u * NE;
    if (e >= count) { break; }
    let hb = kg * p.hPart + (first + e) * p.numSlices * p.rankStride;
    for (var v = 0u; v < BR; v++) {
      let row = rowOf(r0 + tr + v * NR, s, rank);
      if (row.x >= 0) { h[hb + u32(row.x) * p.rankStride + u32(row.y)] = acc[u * BR + v]; }
    }
  }
}
