/**
 * shaders/fused_tile.wgsl (the shrink and the expand of decode tiles in one dispatch; tiles
 * 'discrete'), forced on whatever adapter is here (lavapipe in CI): 1, 2 and 4 entries per tile,
 * every rank bucket, several slices of unequal widths, 16-bit weights, tokens without an adapter,
 * forced tiles (k split over expand threads, B rows per step, narrow column blocks), each against
 * the float64 reference with the same bits from two runs; where it does not apply (weights,
 * several adapters per token, widths not multiples of 4, prefill tiles) the pair of kernels runs;
 * and a fused call repeated on other GPU buffers. Without a WebGPU adapter it is skipped (test/needs.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LoraError } from '../src/errors.js'
import { buildSegments } from '../src/metadata.js'
import { planCall } from '../src/webgpu/call.js'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import { checkRebind, checkTuned } from './gpu-buffers.js'
import { type Case, materialise } from './grid.js'
import { has } from './needs.js'

const gpuHere = await has('webgpu')
let backend: WebGpuBackend | undefined
beforeAll(async () => {
  if (gpuHere) backend = await createWebGpuBackend({ kernels: 'discrete' })
})
afterAll(() => backend?.dispose())

const base: Omit<Case, 'name'> = {
  seed: 3,
  inFeatures: 256,
  sliceWidths: [64, 16, 20],
  rank: 16,
  tokens: 1,
  slots: 1,
  pattern: 'identical',
  dtype: 'f32',
  adaptersPerToken: 1,
}

const FUSED = ['fused_tile']
const ON: TileTuning = { fused: true }

/** Run the case with the tuning; check the kernels chosen, the result, untouched rows, and the same bits twice. */
async function check(c: Case, shaders: string[], tuning: TileTuning = ON): Promise<Float32Array> {
  const { y } = await checkTuned(backend!, c, tuning, (cp) =>
    expect(
      cp.specs.slice(0, shaders.length).map((s) => s.shader),
      c.name,
    ).toEqual(shaders),
  )
  return y
}

/** Each case compiles its own pipelines: minutes on a busy 2-core machine running lavapipe. */
const SLOW = 600_000

describe.runIf(gpuHere)('webgpu fused decode kernel (fused_tile.wgsl)', () => {
  it(
    'tiles of 1, 2 and 4 entries, every rank bucket, unequal slices, 16-bit weights, tokens without an adapter',
    async () => {
      await check({ ...base, name: 'T1 r16' }, FUSED)
      await check({ ...base, name: 'T2 r5 bf16', tokens: 2, rank: 5, dtype: 'bf16' }, FUSED)
      await check({ ...base, name: 'T12 r32 f16, 3 slots', tokens: 12, rank: 32, slots: 3, pattern: 'uniform', dtype: 'f16' }, FUSED)
      await check({ ...base, name: 'T16 r64 in 4096', tokens: 16, rank: 64, inFeatures: 4096, sliceWidths: [256, 64] }, FUSED)
      await check({ ...base, name: 'T9 r24 some-none, 4 slots', tokens: 9, rank: 24, slots: 4, pattern: 'some-none' }, FUSED)
      await check(
        { ...base, name: 'T3 r1 in 4', tokens: 3, rank: 1, inFeatures: 4, sliceWidths: [4], slots: 2, pattern: 'distinct' },
        FUSED,
      )
    },
    SLOW,
  )

  it(
    'forced tiles: the expand over 1, 3 and 8 threads along the rank, B rows per step, column blocks of 8 quads',
    async () => {
      const c = { ...base, name: 'r29 in 1024', tokens: 4, rank: 29, inFeatures: 1024, slots: 4, pattern: 'distinct' as const }
      for (const KT of [1, 3]) await check({ ...c, name: `${c.name} KT ${KT}` }, FUSED, { fused: { KT } })
      await check({ ...c, name: `${c.name} KT 8` }, FUSED, { fused: { KT: 8, NW: 32 } })
      // one tile of 4 entries (its expand sums in workgroup memory for 4 entries)
      await check({ ...c, name: `${c.name}, one slot, KT 3`, slots: 1, pattern: 'identical' }, FUSED, { fused: { KT: 3 } })
      // rows of B per step of the expand: the same bits for any KU
      const ku4 = await check({ ...c, name: `${c.name} KU 4` }, FUSED)
      for (const KU of [1, 3, 16]) {
        const other = await check({ ...c, name: `${c.name} KU ${KU}` }, FUSED, { fused: { KU } })
        expect(new Uint32Array(other.buffer), `KU ${KU} against 4: same bits`).toEqual(new Uint32Array(ku4.buffer))
      }
      // k strips per step of the shrink: the same bits for any QU (3: the last step runs past k)
      for (const QU of [1, 3, 8]) {
        const other = await check({ ...c, name: `${c.name} QU ${QU}` }, FUSED, { fused: { QU, KU: 4 } })
        expect(new Uint32Array(other.buffer), `QU ${QU} against 4: same bits`).toEqual(new Uint32Array(ku4.buffer))
      }
      await check({ ...c, name: `${c.name} NW 8` }, FUSED, { fused: { NW: 8 } })
      // fewer threads along k in the shrink, 4 rank rows each
      await check({ ...c, name: `${c.name} KS 16 RR 4` }, FUSED, { fused: { KS: 16, RR: 4, WG: 128, NW: 32 } })
    },
    SLOW,
  )

  it('tiles over the device minimums are OUT_OF_RANGE before any GPU work, y untouched', async () => {
    const d = materialise({ ...base, name: 'too big', tokens: 4 })
    const layer = backend!.createLayer(d.spec) as GpuLayer
    try {
      d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
      layer.ctx.tuning = { fused: { NW: 128, KT: 4 } }
      const y = new Float32Array(d.y)
      const err = await layer.apply(d.x, y, buildSegments(d.ids, 1, 1)).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(LoraError)
      expect(err).toMatchObject({ code: 'OUT_OF_RANGE', message: expect.stringContaining('fused_tile') })
      expect(y).toEqual(d.y)
    } finally {
      layer.dispose()
    }
  })

  it(
    'where it does not apply, the pair of kernels: weights, several adapters per token, widths not multiples of 4, prefill, forced off',
    async () => {
      await check({ ...base, name: 'weights', tokens: 3, weighted: true }, ['shrink_tile', 'expand_tile'])
      await check({ ...base, name: 'K 2', tokens: 3, adaptersPerToken: 2, slots: 3, pattern: 'distinct' }, ['shrink_tile', 'expand_multi'])
      await check({ ...base, name: 'width 66', sliceWidths: [66] }, ['shrink_tile', 'expand'])
      await check({ ...base, name: 'prefill', tokens: 40 }, ['shrink', 'expand_vec4'])
      await check({ ...base, name: 'forced off' }, ['shrink_tile', 'expand_tile'], { fused: false })
    },
    SLOW,
  )

  it(
    'by default: one entry at rank <= 16 fused; rank 32, two entries or two tiles the pair',
    async () => {
      const none: TileTuning = {}
      await check({ ...base, name: 'default T1 r16' }, FUSED, none)
      await check({ ...base, name: 'default T1 r12 bf16', rank: 12, dtype: 'bf16', seed: 4 }, FUSED, none)
      await check({ ...base, name: 'default T1 r32', rank: 32 }, ['shrink_tile', 'expand_tile'], none)
      await check({ ...base, name: 'default T2', tokens: 2 }, ['shrink_tile', 'expand_tile'], none)
      await check(
        { ...base, name: 'default T2, two slots', tokens: 2, slots: 2, pattern: 'distinct' },
        ['shrink_tile', 'expand_tile'],
        none,
      )
    },
    SLOW,
  )

  it('a fused call repeated on other GPU buffers (the first x destroyed): bound to the new ones', async () => {
    const c: Case = { ...base, name: 'rebind', tokens: 3, rank: 16, slots: 2, pattern: 'distinct' }
    await checkRebind(backend!, c, undefined, ON, (plan, layer) =>
      expect(planCall(layer.ctx, plan).specs.map((p) => p.shader)).toEqual(FUSED),
    )
  })
})
