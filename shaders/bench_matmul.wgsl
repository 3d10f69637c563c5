// bench_matmul: C[M, N] = A[M, K] B[K, N], f32, the compute ceiling of bench/webgpu.ts.
//
// Tiling (DESIGN.md: best dense matmul measured on lavapipe): each thread computes an 8 x 8 block
// of C in registers (16 vec4 accumulators), reading 8 A values and 2 vec4 of B per k: 10 loads
// per 64 FMAs. No workgroup memory (on a CPU driver it buys nothing). Workgroup TX x TY threads
// = (8*TY) x (8*TX) block of C. M % (8*TY) == 0, N % (8*TX) == 0 (the bench picks such sizes).

override TX: u32 = 8u;
override TY: u32 = 8u;

struct Dims { M: u32, N: u32, K: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> d: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;              // [M * K]
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;        // [K * N / 4]
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;  // [M * N / 4]

@compute @workgroup_size(TX, TY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.y * 8u;
  let col4 = gid.x * 2u; // vec4 column index
  let n4 = d.N / 4u;
  var acc: array<vec4<f32>, 16>;
  for (var k = 0u; k < d.K; k++) {
    let b0 = b[k * n4 + col4];
    let b1 = b[k * n4 + col4 + 1u];
    for (var r = 0u; r < 8u; r++) {
      let av = a[(row + r) * d.K + k];
      acc[r * 2u] += av * b0;
      acc[r * 2u + 1u] += av * b1;
    }
  }
  for (var r = 0u; r < 8u; r++) {
    c[(row + r) * n4 + col4] = acc[r * 2u];
    c[(row + r) * n4 + col4 + 1u] = acc[r * 2u + 1u];
  }
}
