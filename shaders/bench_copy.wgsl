// bench_copy: dst[i] = src[i] (vec4), the bandwidth ceiling of bench/webgpu.ts.
// One vec4 per thread, WG threads per workgroup; the grid covers n vec4s exactly (n % WG == 0).

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;        // [n]
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;  // [n]

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * WG + gid.x;
  dst[i] = src[i];
}
