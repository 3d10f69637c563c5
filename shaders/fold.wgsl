// fold: h[i] = h[i] + h[hPart + i] + ... + h[(KG - 1) * hPart + i] for every i < hPart: the KG
// partials of a split-K shrink added once, in the order the expands add them (partial 0, 1, ...,
// KG-1: the same bits), into partial 0, so that the expand that follows reads one h (KG = 1)
// instead of adding the KG partials again in every workgroup of a column tile. Each value is read
// and written by one thread only. Bound with the shrink's bind group (binding 5 is h).

//@params (shaders/params.wgsl)

override KG: u32 = 2u;     // partials to add (>= 2)
override WG: u32 = 256u;   // threads per workgroup

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> h: array<f32>; // [KG * hPart]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * WG;
  for (var i = gid.x; i < p.hPart; i += stride) {
    var v = h[i];
    for (var g = 1u; g < KG; g++) { v += h[i + g * p.hPart]; }
    h[i] = v;
  }
}
