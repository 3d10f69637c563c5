import type { WeightDtype } from './types.js'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** Bytes per stored weight of each dtype. */
export const DTYPE_BYTES: Record<WeightDtype, number> = { f32: 4, bf16: 2, f16: 2 }

/** f32 -> bf16 bits, round to nearest even (NaN kept quiet). */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value
  const x = u32[0]
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
}

/** bf16 bits -> number. */
export function bf16BitsToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16
  return f32[0]
}

/** f32 -> IEEE binary16 bits, round to nearest even; overflow gives infinity. */
export function f32ToF16Bits(value: number): number {
  f32[0] = value
  const x = u32[0]
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    // subnormal half (or zero): shift the implicit-one mantissa right, rounding to nearest even
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = mant & ((1 << shift) - 1)
    let h = mant >>> shift
    if (rest > half || (rest === half && h & 1)) h++
    return sign | h
  }
  let h = (e << 10) | (mant >>> 13)
  const rest = mant & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++ // may carry into the exponent: correct
  return sign | h
}

/** IEEE binary16 bits -> number. */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exp = (bits >>> 10) & 0x1f
  const mant = bits & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant ? NaN : sign * Infinity
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

/** Encode f32 values as 16-bit patterns of `dtype` ('bf16' or 'f16'). */
export function encodeHalf(src: Float32Array, dtype: 'bf16' | 'f16', out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const enc = dtype === 'bf16' ? f32ToBf16Bits : f32ToF16Bits
  for (let i = 0; i < src.length; i++) out[i] = enc(src[i])
  return out
}

/** Decode 16-bit patterns of `dtype` to f32. */
export function decodeHalf(src: Uint16Array, dtype: 'bf16' | 'f16', out: Float32Array = new Float32Array(src.length)): Float32Array {
  const dec = dtype === 'bf16' ? bf16BitsToF32 : f16BitsToF32
  for (let i = 0; i < src.length; i++) out[i] = dec(src[i])
  return out
}

/**
 * Round f32 values to the nearest value representable in `dtype` (round to nearest even).
 * Returns a new array; for 'f32' a copy. Values that overflow f16 become ±Infinity.
 */
export function roundToDtype(src: Float32Array, dtype: WeightDtype): Float32Array {
  if (dtype === 'f32') return new Float32Array(src)
  return decodeHalf(encodeHalf(src, dtype), dtype)
}
