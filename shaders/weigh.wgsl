// weigh: h[e, :] *= w[e] for every plan entry e: the per-entry adapter weights of a call
// (`options.weights`), applied to the shrink's output between the shrink and the expand, so
// the expand kernels add w_e * scale(slot_e) * B h. Runs only when a call has weights.
//
// Tiling. One thread per element of an h row (hRow = S * rankStride floats); workgroup
// (x, y, z) covers 64 elements of entry e = z * yGroups + y (y is capped at 65535 groups).

struct WeighParams {
  entries: u32, // N
  hRow: u32,    // floats per entry in h
  yGroups: u32, // workgroups along y
  _pad: u32,
}

@group(0) @binding(0) var<uniform> q: WeighParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;       // [N]
@group(0) @binding(2) var<storage, read_write> h: array<f32>; // [N * hRow]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = wg.z * q.yGroups + wg.y;
  let i = wg.x * 64u + lid;
  if (e >= q.entries || i >= q.hRow) { return; }
  h[e * q.hRow + i] *= w[e];
}
