/**
 * The prefill GEMM kernels of a big GPU (shaders/shrink_gemm.wgsl, shaders/expand_gemm.wgsl; tiles
 * 'discrete', programs/gemm.ts), forced on whatever adapter is here (lavapipe in CI): the tiles the
 * choice makes (32- and 64-entry tiles, every rank bucket, several rank tiles, split-K over
 * workgroups, 16-bit weights) and forced ones it does not make by default (other register blocks,
 * k blocks, rank rounds, uneven split-K), with awkward shapes (T not a multiple of the tile,
 * segments shorter than a tile, rank 1, in of 12, slices whose widths are not multiples of 4,
 * several adapters per token, per-entry weights), each against the float64 reference, and the same
 * bits from two runs of one call. Without a WebGPU adapter it is skipped (test/needs.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildSegments } from '../src/metadata.js'
import { planCall } from '../src/webgpu/call.js'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import { type Case, materialise } from './grid.js'
import { has } from './needs.js'
import { checkRebind, checkTuned } from './gpu-buffers.js'

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
  tokens: 90,
  slots: 2,
  pattern: 'zipf',
  dtype: 'f32',
  adaptersPerToken: 1,
}

/**
 * Run the case (tiles forced by `tuning`); check the kernels chosen, the entries per tile, the
 * result, untouched rows, and that a second run gives the same bits.
 */
async function check(
  c: Case,
  shaders: [string, string],
  tileM: number,
  tuning?: TileTuning,
): Promise<{ shrink: Record<string, number>; expand: Record<string, number>; y: Float32Array; folded: boolean }> {
  const { cp, y } = await checkTuned(backend!, c, tuning, (cp) =>
    expect([cp.specs[0].shader, cp.specs[1].shader, cp.tileM], c.name).toEqual([...shaders, tileM]),
  )
  return {
    shrink: cp.specs[0].overrides as Record<string, number>,
    expand: cp.specs[1].overrides as Record<string, number>,
    y,
    folded: cp.specs.some((p) => p.shader === 'fold'),
  }
}

const GEMM: [string, string] = ['shrink_gemm', 'expand_gemm']
/** Each case compiles its own pipelines: minutes on a busy 2-core machine running lavapipe. */
const SLOW = 600_000

describe.runIf(gpuHere)('webgpu GEMM kernels (discrete tiles, prefill)', () => {
  it(
    'the default choice (calls of 256 entries or more): 32-entry tiles; forced on smaller calls: 32- and 64-entry tiles, every rank bucket, several rank tiles, 16-bit weights',
    async () => {
      const small = { ...base, inFeatures: 64, sliceWidths: [32, 8] }
      await check({ ...small, name: 'T600 r16 zipf', tokens: 600 }, GEMM, 32)
      await check({ ...small, name: 'T256 r64 one slot', tokens: 256, rank: 64, slots: 1, pattern: 'identical' }, GEMM, 32)
      await check(
        {
          ...small,
          name: 'T520 r24 bf16, 32 slots: segments of <= 32',
          tokens: 520,
          slots: 32,
          rank: 24,
          pattern: 'uniform',
          dtype: 'bf16',
        },
        GEMM,
        32,
      )
      await check({ ...small, name: 'T250: the other kernels', tokens: 250 }, ['shrink', 'expand_vec4'], 16)
      // rank 64 with >= 64 unsplit workgroups (32 tiles x 3 slices): 8 x 4 register blocks
      const wide = await check(
        {
          ...small,
          name: 'T1024 r64 3 slices: 8 x 4 blocks',
          tokens: 1024,
          rank: 64,
          slots: 1,
          pattern: 'identical',
          sliceWidths: [32, 8, 12],
        },
        GEMM,
        32,
      )
      expect([wide.shrink.BM, wide.shrink.BR]).toEqual([8, 4])
      const narrow = await check(
        { ...small, name: 'T256 r64 3 slices: 4 x 2', tokens: 256, rank: 64, slots: 1, pattern: 'identical', sliceWidths: [32, 8, 12] },
        GEMM,
        32,
      )
      expect([narrow.shrink.BM, narrow.shrink.BR]).toEqual([4, 2])
      const on: TileTuning = { gemm: true }
      await check(
        { ...base, name: 'T130 r64 in 1028 some-none', tokens: 130, rank: 64, inFeatures: 1028, pattern: 'some-none' },
        GEMM,
        64,
        { gemm: true, tileM: 64 },
      )
      await check(
        { ...base, name: 'T70 r128 f16 one slot', tokens: 70, rank: 128, slots: 1, pattern: 'identical', dtype: 'f16' },
        GEMM,
        32,
        on,
      )
      await check({ ...base, name: 'T40 r24 bf16 uniform', tokens: 40, rank: 24, pattern: 'uniform', dtype: 'bf16' }, GEMM, 32, on)
      await check({ ...base, name: 'T20 r1 in 12', tokens: 20, rank: 1, inFeatures: 12, slots: 1, pattern: 'identical' }, GEMM, 32, on)
    },
    SLOW,
  )

  it(
    'forced tiles: split-K 1, 3 (uneven) and 16, 16-entry tiles, other register blocks, k blocks and rank rounds',
    async () => {
      await check({ ...base, name: 'KG 1' }, GEMM, 32, { gemm: true, shrinkGemm: { KG: 1 } })
      await check({ ...base, name: 'KG 3, in 260', inFeatures: 260, dtype: 'bf16' }, GEMM, 32, { gemm: true, shrinkGemm: { KG: 3 } })
      await check({ ...base, name: 'KG 16, in 1024, r40', inFeatures: 1024, rank: 40 }, GEMM, 64, {
        gemm: true,
        tileM: 64,
        shrinkGemm: { KG: 16 },
      })
      await check({ ...base, name: '16-entry tiles, T5 (forced on a short segment)', tokens: 5 }, GEMM, 16, { gemm: true, tileM: 16 })
      await check({ ...base, name: 'shrink 8 x 4, KB 16; expand 4 entries x 1 quad, KC 8', rank: 20 }, GEMM, 32, {
        gemm: true,
        shrinkGemm: { BM: 8, BR: 4, KB: 16 },
        expandGemm: { BM: 4, NW: 16, BQ: 1, KC: 8 },
      })
      await check({ ...base, name: 'shrink 4 x 8, KB 8; expand 16 entries x 1 quad', rank: 32, dtype: 'f16' }, GEMM, 64, {
        gemm: true,
        tileM: 64,
        shrinkGemm: { BM: 4, BR: 8, KB: 8 },
        expandGemm: { BM: 16, NW: 8, BQ: 1 },
      })
      // k blocks of 128 need 25 KiB of workgroup memory: kept where the device has it, else halved
      const big = await check({ ...base, name: 'shrink 2 x 2, KB 128, in 1024', inFeatures: 1024, sliceWidths: [40] }, GEMM, 32, {
        gemm: true,
        shrinkGemm: { BM: 2, BR: 2, KB: 128, KG: 2 },
      })
      const room = backend!.device.limits.maxComputeWorkgroupStorageSize
      expect(big.shrink.KB, `KB with ${room} bytes of workgroup memory`).toBe(room >= 48 * 33 * 16 + 16 ? 128 : 64)
    },
    SLOW,
  )

  it(
    'split-K partials folded once before the expand (programs/fold.ts): by default from rank rows of 32 or 16 partials over several slices, the same bits as unfolded, weighted, on other buffers',
    async () => {
      const bits = (y: Float32Array) => new Uint32Array(y.buffer)
      // rank 64, split over workgroups: folded by default; forced off gives the same bits
      const r64: Case = { ...base, name: 'T300 r64 (folded)', tokens: 300, rank: 64, slots: 2, inFeatures: 512 }
      const folded = await check(r64, GEMM, 32)
      expect(folded.folded, 'rank 64 folds').toBe(true)
      expect(folded.shrink.KG, 'split over workgroups').toBeGreaterThan(1)
      const unfolded = await check({ ...r64, name: 'T300 r64 (not folded)' }, GEMM, 32, { fold: false })
      expect(unfolded.folded).toBe(false)
      expect(bits(folded.y), 'folded and unfolded: same bits').toEqual(bits(unfolded.y))
      // rank 16 keeps its partials; folding them (forced) gives the same bits
      const r16: Case = { ...base, name: 'T300 r16 bf16', tokens: 300, dtype: 'bf16', inFeatures: 512 }
      const plain = await check(r16, GEMM, 32)
      expect(plain.folded, 'rank 16 does not fold').toBe(false)
      const forced = await check({ ...r16, name: 'T300 r16 bf16 folded' }, GEMM, 32, { fold: true })
      expect(forced.folded).toBe(true)
      expect(bits(forced.y), 'same bits').toEqual(bits(plain.y))
      // rank 16 with 16 partials: folded by default over several slices, not over one
      const k16 = { gemm: true, shrinkGemm: { KG: 16 } }
      const sliced = await check({ ...r16, name: 'T300 r16 bf16 KG 16, 3 slices', inFeatures: 1024 }, GEMM, 32, k16)
      expect(sliced.folded, '16 partials over 3 slices fold').toBe(true)
      const oneSlice: Case = { ...r16, name: 'T300 r16 bf16 KG 16, 1 slice', inFeatures: 1024, sliceWidths: [100] }
      expect((await check(oneSlice, GEMM, 32, k16)).folded, '16 partials over 1 slice do not').toBe(false)
      // weights: h weighed per partial, then folded, as the expand adds them (same bits), KG 3 (uneven chunks)
      const weighted: Case = { ...base, name: 'weighted KG 3 folded', weighted: true, tokens: 60, rank: 40, inFeatures: 260 }
      const wf = await check(weighted, GEMM, 32, { gemm: true, fold: true, shrinkGemm: { KG: 3 } })
      const wu = await check({ ...weighted, name: 'weighted KG 3' }, GEMM, 32, { gemm: true, fold: false, shrinkGemm: { KG: 3 } })
      expect(wf.folded && !wu.folded).toBe(true)
      expect(bits(wf.y), 'weighted: same bits').toEqual(bits(wu.y))
    },
    SLOW,
  )

  it(
    'y read before the k loop (the default) or where it is written (prefetchY false): the same bits, each against the reference',
    async () => {
      const bits = (y: Float32Array) => new Uint32Array(y.buffer)
      for (const c of [
        { ...base, name: 'T300 r16 (y early)', tokens: 300, inFeatures: 512 },
        {
          ...base,
          name: 'T300 r40 bf16 3 slices (y early)',
          tokens: 300,
          rank: 40,
          dtype: 'bf16' as const,
          inFeatures: 260,
          sliceWidths: [64, 16, 20],
        },
      ] as Case[]) {
        const early = await check(c, GEMM, 32)
        const late = await check({ ...c, name: c.name.replace('early', 'late') }, GEMM, 32, { prefetchY: false })
        expect(bits(late.y), `${c.name}: same bits`).toEqual(bits(early.y))
      }
    },
    SLOW,
  )

  it(
    'stacked layers at a low rank: the slices merged into one rank axis of shrink_gemm (RS), the same bits as one slice per workgroup',
    async () => {
      const bits = (y: Float32Array) => new Uint32Array(y.buffer)
      // the same split over workgroups merged and apart (by default it follows the workgroup count)
      const k2 = { shrinkGemm: { KG: 2 } }
      const cases: [Case, number, TileTuning | undefined][] = [
        [{ ...base, name: 'T300 3 slices r16', tokens: 300, slots: 4, pattern: 'uniform' }, 16, undefined],
        [{ ...base, name: 'T300 3 slices r16 KG 2', tokens: 300, slots: 4, pattern: 'uniform' }, 16, k2],
        [{ ...base, name: 'T300 2 slices r32 bf16', tokens: 300, rank: 32, sliceWidths: [48, 20], dtype: 'bf16', slots: 3 }, 32, k2],
        [{ ...base, name: 'T300 3 slices r9 weighted', tokens: 300, rank: 9, weighted: true }, 16, k2],
        [{ ...base, name: 'T300 3 slices r16 KG 3', tokens: 300, inFeatures: 260 }, 16, { shrinkGemm: { KG: 3 } }],
      ]
      for (const [c, RS, tuning] of cases) {
        const merged = await check(c, GEMM, 32, tuning)
        expect([merged.shrink.RS, merged.shrink.RT], `${c.name}: rows per slice, rows per tile`).toEqual([RS, RS * c.sliceWidths.length])
        const apart = await check({ ...c, name: `${c.name} (slices apart)` }, GEMM, 32, { ...tuning, mergeSlices: false })
        expect(apart.shrink.RS).toBe(0)
        // the same bits where both split k alike (k blocks and register blocks do not change the sums' order)
        if (tuning) expect(bits(apart.y), `${c.name}: same bits`).toEqual(bits(merged.y))
      }
      // three slices of 32 rank rows do not fit one tile of 64: one slice per workgroup
      expect((await check({ ...base, name: 'T300 3 slices r32', tokens: 300, rank: 32 }, GEMM, 32)).shrink.RS).toBe(0)
      // forced blocks that would need more threads than every device has: a LoraError naming them, y untouched
      const d = materialise({ ...base, name: 'T300 3 slices r16, 2 x 2 blocks forced', tokens: 300 })
      const layer = backend!.createLayer(d.spec) as GpuLayer
      try {
        d.adapters.forEach((a, slot) => layer.setAdapter(slot, a))
        layer.ctx.tuning = { shrinkGemm: { BM: 2, BR: 2 } }
        const y = new Float32Array(d.y)
        const plan = buildSegments(d.ids, 1, base.slots, 64)
        await expect(layer.apply(d.x, y, plan)).rejects.toMatchObject({
          code: 'OUT_OF_RANGE',
          message: expect.stringMatching(/shrink_gemm .*384 threads/),
        })
        expect(y).toEqual(d.y)
      } finally {
        layer.dispose()
      }
    },
    SLOW,
  )

  it(
    'long calls: 8 partials over 32 tiles folded at rank 16 (KG x tiles >= 256), y read late by a rank-64 expand over 32 tiles (early on fewer)',
    async () => {
      const long: Case = {
        ...base,
        name: 'T1024 r16, 32 tiles',
        tokens: 1024,
        inFeatures: 1024,
        sliceWidths: [40],
        slots: 1,
        pattern: 'identical',
      }
      const k8 = { shrinkGemm: { KG: 8 } }
      const r16 = await check(long, GEMM, 32, k8)
      expect([r16.folded, r16.expand.PY], 'r16, 32 tiles: folded, y early').toEqual([true, undefined])
      const r16short = await check({ ...long, name: 'T512 r16, 16 tiles', tokens: 512 }, GEMM, 32, k8)
      expect(r16short.folded, 'r16, 16 tiles: not folded').toBe(false)
      const r64 = await check({ ...long, name: 'T1024 r64, 32 tiles', rank: 64 }, GEMM, 32)
      expect(r64.expand.PY, 'r64, 32 tiles: y late').toBe(0)
      const r64short = await check({ ...long, name: 'T512 r64, 16 tiles', rank: 64, tokens: 512 }, GEMM, 32)
      expect(r64short.expand.PY, 'r64, 16 tiles: y early').toBeUndefined()
      const forced = await check({ ...long, name: 'T1024 r64 y early (forced)', rank: 64 }, GEMM, 32, { prefetchY: true })
      expect(forced.expand.PY).toBeUndefined()
      expect(new Uint32Array(forced.y.buffer), 'early and late: same bits').toEqual(new Uint32Array(r64.y.buffer))
    },
    SLOW,
  )

  it('a folded call repeated on other GPU buffers (the first x destroyed): the fold is bound to the new ones', async () => {
    const c: Case = { ...base, name: 'rebind', tokens: 300, rank: 64, slots: 2, inFeatures: 512, sliceWidths: [64, 16, 20] }
    await checkRebind(backend!, c, 64, undefined, (plan, layer) =>
      expect(planCall(layer.ctx, plan).specs.map((p) => p.shader)).toContain('fold'),
    )
  })

  it(
    'beside the other kernels: widths not multiples of 4, several adapters per token, weights, in % 4, decode, forced off',
    async () => {
      const on: TileTuning = { gemm: true }
      await check({ ...base, name: 'width 66', sliceWidths: [66, 6] }, ['shrink_gemm', 'expand'], 32, on)
      await check({ ...base, name: 'K 2', adaptersPerToken: 2, tokens: 50, slots: 3 }, ['shrink_gemm', 'expand_multi'], 32, on)
      await check({ ...base, name: 'weights', weighted: true, tokens: 40, slots: 1, pattern: 'identical' }, GEMM, 64, {
        gemm: true,
        tileM: 64,
      })
      await check({ ...base, name: 'in 258', inFeatures: 258 }, ['shrink', 'expand_vec4'], 16)
      await check({ ...base, name: 'decode', tokens: 3, pattern: 'distinct', slots: 3 }, ['shrink_tile', 'expand_tile'], 1)
      await check({ ...base, name: 'forced off' }, ['shrink', 'expand_vec4'], 16, { gemm: false })
    },
    SLOW,
  )
})
