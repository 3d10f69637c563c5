// Ceilings for the benchmark, measured in the same run as the kernels.
import { fma } from './simd'

/**
 * f32x4 multiply-add throughput with 12 independent accumulators held in registers (no memory
 * traffic): the single-core SIMD peak. FLOPs = iterations * 12 * 8. The multiplier and addend
 * come in as arguments (0.999999 and 1e-7): as constants, newer V8 (Node 24) rebuilt them at each
 * use inside the loop, three instructions each, and read a third of the peak.
 */
export function peakFlops(iterations: i32, mul: f32, add: f32): f32 {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  let c4 = f32x4.splat(0), c5 = f32x4.splat(0), c6 = f32x4.splat(0), c7 = f32x4.splat(0)
  let c8 = f32x4.splat(0), c9 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0)
  const a = f32x4.splat(mul), b = f32x4.splat(add)
  for (let i = 0; i < iterations; i++) {
    c0 = fma(c0, a, b); c1 = fma(c1, a, b); c2 = fma(c2, a, b); c3 = fma(c3, a, b)
    c4 = fma(c4, a, b); c5 = fma(c5, a, b); c6 = fma(c6, a, b); c7 = fma(c7, a, b)
    c8 = fma(c8, a, b); c9 = fma(c9, a, b); c10 = fma(c10, a, b); c11 = fma(c11, a, b)
  }
  const s = f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7)))
  const t = f32x4.add(s, f32x4.add(f32x4.add(c8, c9), f32x4.add(c10, c11)))
  return f32x4.extract_lane(t, 0)
}

/** Memory read bandwidth: sum `bytes` (multiple of 64) from p, `reps` times. Returns the sum. */
export function readBytes(p: usize, bytes: i32, reps: i32): f32 {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0)
  const end = p + <usize>bytes
  for (let r = 0; r < reps; r++) {
    for (let q = p; q < end; q += 64) {
      c0 = f32x4.add(c0, v128.load(q)); c1 = f32x4.add(c1, v128.load(q, 16))
      c2 = f32x4.add(c2, v128.load(q, 32)); c3 = f32x4.add(c3, v128.load(q, 48))
    }
  }
  return f32x4.extract_lane(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), 0)
}
