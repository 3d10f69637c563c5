import { describe, expect, it } from 'vitest'
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundToDtype } from '../src/dtype.js'
import { Rng } from './random.js'
import { roundWeights } from './reference.js'

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
    // biome-ignore lint/suspicious/noApproximativeNumericConstant: an arbitrary value to round, not pi
    const a = Float32Array.of(1 + 2 ** -12, 3.14159)
    // biome-ignore lint/suspicious/noApproximativeNumericConstant: the same arbitrary value, not pi
    expect([...roundToDtype(a, 'f16')]).toEqual([1, f16BitsToF32(f32ToF16Bits(3.14159))])
    expect(roundToDtype(a, 'f32')).toEqual(a)
  })
})

describe('roundToDtype against the test reference (its own arithmetic rounding)', () => {
  /** Every tie between two neighbours of `dtype` near the values given, the neighbours, and one f32 ulp either side of each tie. */
  function edgeValues(): Float32Array {
    const bits = new Uint32Array(1)
    const f = new Float32Array(bits.buffer)
    const out: number[] = [
      0,
      -0,
      NaN,
      Infinity,
      -Infinity,
      65504,
      65519.99,
      65520,
      -65520,
      3.3895313892515355e38,
      // biome-ignore lint/correctness/noPrecisionLoss: a literal past f32 precision is the input under test
      3.3961775292304135e38,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -25,
      2 ** -133,
      2 ** -134,
      2 ** -14,
      2 ** -15 * 3,
    ]
    const rng = new Rng(11)
    for (let i = 0; i < 4000; i++) {
      // a random f32 (any exponent), then its bf16 tie (low 16 bits 0x8000) and f16 tie (low 13 bits 0x1000)
      bits[0] = (rng.int(2 ** 16) << 16) | rng.int(2 ** 16)
      const v = f[0]
      const base = bits[0]
      for (const tie of [(base & 0xffff0000) | 0x8000, (base & 0xffffe000) | 0x1000]) {
        for (const d of [-1, 0, 1]) {
          bits[0] = tie + d
          out.push(f[0])
        }
      }
      out.push(v)
    }
    // f16 subnormal ties: k + 1/2 times the spacing 2^-24
    for (let k = 0; k < 1024; k++) out.push((k + 0.5) * 2 ** -24, -(k + 0.5) * 2 ** -24)
    return Float32Array.from(out)
  }

  for (const dtype of ['bf16', 'f16'] as const) {
    it(`${dtype}: the same values on ties, neighbours, subnormals, overflow and random f32`, () => {
      const values = edgeValues()
      const got = roundToDtype(values, dtype)
      const want = roundWeights(values, dtype)
      for (let i = 0; i < values.length; i++) {
        if (!Object.is(got[i], want[i])) throw new Error(`${dtype}(${values[i]}): library ${got[i]}, reference ${want[i]}`)
      }
    })
  }

  it('the reference rounds known ties to even', () => {
    expect([...roundWeights(Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8)), 'bf16')]).toEqual([1, 1 + 2 ** -6, -1])
    expect([...roundWeights(Float32Array.of(1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25, 65520), 'f16')]).toEqual([
      1,
      1 + 2 ** -9,
      0,
      2 ** -23,
      Infinity,
    ])
  })
})
