// Shared SIMD helpers: fused multiply-add and weight loads/decoding for each storage type.
//
// Storage types are selected at compile time through the generic parameter W:
//   f32 -> weights stored as f32
//   u16 -> weights stored as bf16 (the top 16 bits of an f32)
//   i16 -> weights stored as IEEE f16 (binary16)
// The i16/u16 tags only select the decoder; the bits are read unsigned in both cases.
//
// Kernels read weights in groups of 8 (load8lo / load8hi). For bf16 each group is stored
// interleaved as e0 e4 e1 e5 e2 e6 e3 e7 (see src/wasm/layout.ts), so one 16-byte load yields
// both halves with one op each: (lane << 16) = e0..e3 and (lane & 0xffff0000) = e4..e7.
// f32 and f16 groups are stored in natural order. Tails shorter than 8 are natural for all.

/** a * b + c on f32x4; f32x4.relaxed_madd in the relaxed-SIMD build (fused or not, per CPU). */
@inline export function fma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c)
  return f32x4.add(f32x4.mul(a, b), c)
}

/** Address of row rows[e] of a matrix at `base` with rows `stride` bytes apart. */
@inline export function rowAt(base: usize, rowsPtr: usize, e: i32, stride: usize): usize {
  return base + <usize>load<i32>(rowsPtr + (<usize>e << 2)) * stride
}

/** Sum of the four lanes. */
@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3))
}

// The vector constants of the decoders, read from memory where they are used. Newer V8 (Node 24,
// current Chrome and Deno) does not keep a v128.const in a register across a loop: it
// rebuilds it at every use (a 64-bit immediate moved through a general register, then
// broadcast: three instructions in the innermost loops), where a load from memory is one,
// folded into the operation, on every engine (Node 20's V8 kept the constant in a register).
const CONSTS: usize = memory.data<u32>([
  0xffff0000, 0xffff0000, 0xffff0000, 0xffff0000, // bf16: the high halves of a lane pair
  0x7fff, 0x7fff, 0x7fff, 0x7fff, // f16: magnitude bits
  0x8000, 0x8000, 0x8000, 0x8000, // f16: sign bit
  0x77800000, 0x77800000, 0x77800000, 0x77800000, // f32 2^112: f16 -> f32 exponent rebias
], 16)
const HI_MASK: usize = 0
const F16_MAG: usize = 16
const F16_SIGN: usize = 32
const F16_REBIAS: usize = 48

/** f16 bits in the low 16 bits of each i32 lane -> f32x4 (exact for normals and subnormals). */
@inline function decodeF16x4(w: v128): v128 {
  // magnitude bits moved to the f32 exponent/mantissa position, then rebiased by 2^(127-15)
  // with one multiply; this also maps f16 subnormals exactly. Inf/NaN never reach the kernels
  // (setAdapter rejects weights that do not fit f16).
  const mag = i32x4.shl(v128.and(w, v128.load(CONSTS, F16_MAG)), 13)
  const sign = i32x4.shl(v128.and(w, v128.load(CONSTS, F16_SIGN)), 16)
  return v128.or(f32x4.mul(mag, v128.load(CONSTS, F16_REBIAS)), sign)
}

/** Bytes per stored weight. */
@inline export function wsize<W>(): usize {
  return sizeof<W>()
}

/** Load 4 consecutive weights at byte address p, as f32x4. */
@inline export function load4<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p)
  const w = v128.load16x4_u(p)
  if (isSigned<W>()) return decodeF16x4(w)
  return i32x4.shl(w, 16)
}

/** Weights 0..3 of the 8-group at byte address p, as f32x4. */
@inline export function load8lo<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p)
  if (isSigned<W>()) return decodeF16x4(v128.load16x4_u(p))
  return i32x4.shl(v128.load(p), 16)
}

/** Weights 4..7 of the 8-group at byte address p, as f32x4. */
@inline export function load8hi<W>(p: usize): v128 {
  if (sizeof<W>() == 4) return v128.load(p, 16)
  if (isSigned<W>()) return decodeF16x4(v128.load16x4_u(p, 8))
  return v128.and(v128.load(p), v128.load(CONSTS, HI_MASK))
}

/** Load one weight at byte address p, as f32. */
@inline export function load1<W>(p: usize): f32 {
  if (sizeof<W>() == 4) return load<f32>(p)
  const w = <u32>load<u16>(p)
  if (isSigned<W>()) {
    const mag = reinterpret<f32>((w & 0x7fff) << 13) * 5.192296858534828e33
    return reinterpret<f32>(reinterpret<u32>(mag) | ((w & 0x8000) << 16))
  }
  return reinterpret<f32>(w << 16)
}

/** p[0..n) *= scale (f32). */
@inline export function scaleInPlace(p: usize, n: i32, scale: f32): void {
  const vs = f32x4.splat(scale)
  const n4 = <usize>(n & ~3)
  for (let i: usize = 0; i < n4; i += 4) v128.store(p + (i << 2), f32x4.mul(v128.load(p + (i << 2)), vs))
  for (let i = n4; i < <usize>n; i++) store<f32>(p + (i << 2), load<f32>(p + (i << 2)) * scale)
}

/** Where touchLines leaves its sum (a global write: the loads are kept). */
let touchSink: u32 = 0

/**
 * Read one value of every 64-byte line of [p, p + bytes): a loop of a few instructions per line
 * keeps many lines in flight, so that the tiles' passes over those bytes find them in the caches.
 */
@inline export function touchLines(p: usize, bytes: usize): void {
  let s: u32 = 0
  const end = p + bytes
  for (let q = p; q < end; q += 64) s += load<u32>(q)
  touchSink += s
}
