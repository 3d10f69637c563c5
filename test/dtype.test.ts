import { describe, expect, it } from 'vitest'
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundToDtype } from '../src/dtype.js'
import { Rng } from './random.js'

describe('bf16', () => {
  it('rounds to nearest even', () => {
    // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even (1)
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8))).toBe(1)
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6)
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6)
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -12))).toBe(1 + 2 ** -7)
    expect(f32ToBf16Bits(-0)).toBe(0x8000)
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true)
  })
  it('round trip is exact for bf16 values and within half an ulp for others', () => {
    const rng = new Rng(5)
    for (let i = 0; i < 10000; i++) {
      const v = rng.float(100)
      const r = bf16BitsToF32(f32ToBf16Bits(v))
      expect(Math.abs(r - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8)
      expect(bf16BitsToF32(f32ToBf16Bits(r))).toBe(r)
    }
  })
})

describe('f16', () => {
  it('encodes known values', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00)
    expect(f32ToF16Bits(-2)).toBe(0xc000)
    expect(f32ToF16Bits(65504)).toBe(0x7bff)
    expect(f32ToF16Bits(65520)).toBe(0x7c00) // rounds up to infinity
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001) // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000) // tie to even: 0
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002) // tie to even: 2 * 2^-24
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00) // tie to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02)
  })
  it('decodes every finite f16 and re-encodes it to the same bits', () => {
    for (let b = 0; b < 0x10000; b++) {
      if ((b & 0x7c00) === 0x7c00) continue
      const v = f16BitsToF32(b)
      expect(f32ToF16Bits(v)).toBe(b === 0x8000 ? 0x8000 : b)
    }
  })
  it('roundToDtype rounds arrays', () => {
    const a = Float32Array.of(1 + 2 ** -12, 3.14159)
    expect([...roundToDtype(a, 'f16')]).toEqual([1, f16BitsToF32(f32ToF16Bits(3.14159))])
    expect(roundToDtype(a, 'f32')).toEqual(a)
  })
})
