// The benchmark's figures: the regret's noise interval and the peers' headroom under the one-core
// wasm roofline (bench/cli/report.ts, measure.ts). They decide what the report claims, so they are
// checked on hand-made rows.
import { describe, expect, it } from 'vitest'
import { medianInterval } from '../bench/cli/measure.js'
import { addHeadroom, type Row, summarise } from '../bench/cli/report.js'
import { Rng } from './random.js'

describe('medianInterval', () => {
  it('brackets the median and narrows with more samples', () => {
    const rng = new Rng(3)
    const draw = (n: number) => Array.from({ length: n }, () => 1 + 0.2 * (rng.next() - 0.5)).sort((a, b) => a - b)
    const small = draw(15)
    const large = draw(400)
    const [lo, hi] = medianInterval(small)
    const med = small[(small.length - 1) >> 1]
    expect(lo).toBeLessThanOrEqual(med)
    expect(hi).toBeGreaterThanOrEqual(med)
    expect(lo).toBeGreaterThan(0.9)
    expect(hi).toBeLessThan(1.1)
    const [lo2, hi2] = medianInterval(large)
    expect(hi2 - lo2).toBeLessThan(hi - lo)
  })

  it('is the sample itself for fewer than two samples, and the value for constant samples', () => {
    expect(medianInterval([1.5])).toEqual([1.5, 1.5])
    expect(medianInterval([2, 2, 2, 2])).toEqual([2, 2])
  })
})

function row(o: Partial<Row>): Row {
  return {
    shape: 'o',
    rank: 16,
    distinct: 1,
    T: 1,
    dtype: 'f32',
    ms: {},
    choice: 'wasm',
    predictedMs: {},
    reason: '',
    regret: 1,
    regretPairs: 7,
    bestForced: 'wasm',
    wasmGflops: 0,
    peakFraction: 0,
    weightGBs: 0,
    bandwidthFraction: 0,
    flops: 0,
    weightBytes: 0,
    spread: {},
    ...o,
  }
}

describe('headroom under the roofline', () => {
  it('takes the larger of the byte and FLOP bounds, from the best ceilings of the run', () => {
    // 20 MB at the best read rate of 20 GB/s = 1 ms; 10 GFLOP at 40 GFLOP/s = 250 ms
    const rows = [
      row({ weightBytes: 20e6, flops: 1e6, ms: { 'tfjs-wasm': 1.5 } }),
      row({ weightBytes: 1e3, flops: 10e9, ms: { 'tfjs-wasm': 600 } }),
    ]
    addHeadroom(rows, [
      { peakGflops: 30, readGBs: 20 },
      { peakGflops: 40, readGBs: 10 },
    ])
    expect(rows[0].rooflineMs).toBeCloseTo(1, 9)
    expect(rows[0].tfjsHeadroom).toBeCloseTo(1.5, 9)
    expect(rows[1].rooflineMs).toBeCloseTo(250, 9)
    expect(rows[1].tfjsHeadroom).toBeCloseTo(2.4, 9)
  })

  it('counts the points where 2x over tfjs and parity with onnxruntime are possible at all', () => {
    const rows = [
      // tfjs 1.5x the roofline: 2x impossible, not counted as reachable
      row({ weightBytes: 20e6, ms: { 'tfjs-wasm': 1.5, 'wasm/f32': 1.2 }, tfjsOverWasm: 1.25 }),
      // tfjs 4x the roofline, wasm 2.5x faster than tfjs: reachable and met
      row({ weightBytes: 20e6, ms: { 'tfjs-wasm': 4, 'wasm/f32': 1.6 }, tfjsOverWasm: 2.5 }),
      // reachable, missed
      row({ weightBytes: 20e6, ms: { 'tfjs-wasm': 3, 'wasm/f32': 2 }, tfjsOverWasm: 1.5 }),
      // onnxruntime faster than the bf16 roofline: unreachable
      row({ dtype: 'bf16', T: 16, weightBytes: 10e6, ms: { onnxruntime: 0.25 }, ortOverWasm: 0.4 }),
      // onnxruntime slower than the roofline, wasm faster: reachable and met
      row({ dtype: 'bf16', T: 64, weightBytes: 10e6, ms: { onnxruntime: 2 }, ortOverWasm: 1.3 }),
      // T > 64: not part of the target
      row({ dtype: 'bf16', T: 256, weightBytes: 10e6, ms: { onnxruntime: 2 }, ortOverWasm: 0.5 }),
    ]
    addHeadroom(rows, [{ peakGflops: 40, readGBs: 20 }])
    const s = summarise(rows)
    expect(s.tfjsOverWasm).toMatchObject({ under2: 2, reachable: 2, metWhereReachable: 1 })
    expect(s.ortOverWasmBf16AtT64).toMatchObject({ under1: 1, reachable: 1, metWhereReachable: 1 })
  })

  it('counts a regret as more than noise only when its whole interval is above 1.10', () => {
    const rows = [
      row({ regret: 1.2, regretLow: 0.98, regretHigh: 1.4 }),
      row({ regret: 1.15, regretLow: 1.12, regretHigh: 1.2 }),
      row({ regret: 1 }),
    ]
    const s = summarise(rows)
    expect(s.regret.over110).toBe(2)
    expect(s.regretSignificantOver110).toBe(1)
  })
})
