/**
 * The tile kernels of a big GPU (shaders/shrink_tile.wgsl, shaders/expand_tile.wgsl; tiles
 * 'discrete'), forced on whatever adapter is here (lavapipe in CI): every variant the tile choice
 * makes (decode tiles with A read directly, prefill tiles with A staged in workgroup memory, each
 * rank bucket, split-K over workgroups, 16-bit weights), plus forced tiles that the choice does not
 * make by default (other split-K, tails of a k chunk), each against the float64 reference, and the
 * same bits from two runs of one call. Without a WebGPU adapter it is skipped (test/needs.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import type { Case } from './grid.js'
import { checkTuned } from './gpu-buffers.js'
import { has } from './needs.js'

const gpuHere = await has('webgpu')
let backend: WebGpuBackend | undefined
beforeAll(async () => {
  if (gpuHere) backend = await createWebGpuBackend({ kernels: 'discrete' })
})
afterAll(() => backend?.dispose())

const base: Omit<Case, 'name'> = {
  seed: 1,
  inFeatures: 256,
  sliceWidths: [64, 16, 20],
  rank: 16,
  tokens: 40,
  slots: 3,
  pattern: 'zipf',
  dtype: 'f32',
  adaptersPerToken: 1,
}

/** Run the case with the tiles forced; check the kernels chosen, the result, and that a second run gives the same bits. */
async function check(c: Case, shaders: [string, string], tuning?: TileTuning): Promise<Float32Array> {
  const { y } = await checkTuned(backend!, c, tuning, (cp) => expect([cp.specs[0].shader, cp.specs[1].shader], c.name).toEqual(shaders))
  return y
}

const TILES: [string, string] = ['shrink_tile', 'expand_tile']
/** Each case compiles its own pipelines: minutes on a busy 2-core machine running lavapipe. */
const SLOW = 600_000

describe.runIf(gpuHere)('webgpu tile kernels (discrete tiles)', () => {
  it(
    'decode tiles (the default): 1, 2 and 4 entries per tile, every rank bucket, 16-bit weights',
    async () => {
      // one entry at rank <= 16 runs fused_tile.wgsl by default (test/webgpu-fused.test.ts): the pair forced
      await check({ ...base, name: 'T1 r16', tokens: 1, slots: 1, pattern: 'identical' }, TILES, { fused: false })
      await check({ ...base, name: 'T1 r32', tokens: 1, slots: 1, rank: 32, pattern: 'identical' }, TILES)
      await check({ ...base, name: 'T2 r5 bf16', tokens: 2, slots: 1, rank: 5, pattern: 'identical', dtype: 'bf16' }, TILES)
      await check({ ...base, name: 'T12 r32 f16 distinct', tokens: 12, rank: 32, pattern: 'uniform', dtype: 'f16' }, TILES)
      await check({ ...base, name: 'T16 r64 one slot', tokens: 16, slots: 1, rank: 64, pattern: 'identical', inFeatures: 4096 }, TILES)
    },
    SLOW,
  )

  it(
    'prefill tiles (forced): A staged, every rank bucket, partial tiles and chunks, some tokens without an adapter',
    async () => {
      const on: TileTuning = { tileKernels: true }
      await check({ ...base, name: 'T40 r16' }, TILES, on)
      await check({ ...base, name: 'T70 r24 bf16 some-none', tokens: 70, rank: 24, pattern: 'some-none', dtype: 'bf16' }, TILES, on)
      await check({ ...base, name: 'T100 r64 in 1028', tokens: 100, rank: 64, inFeatures: 1028, sliceWidths: [128], slots: 2 }, TILES, on)
      await check(
        { ...base, name: 'T33 r3 f16 in 12', tokens: 33, rank: 3, inFeatures: 12, dtype: 'f16', pattern: 'identical', slots: 1 },
        TILES,
        on,
      )
      await check({ ...base, name: 'T70 r16, 64-entry tiles', tokens: 70, pattern: 'identical', slots: 1 }, TILES, {
        tileKernels: true,
        tileM: 64,
      })
      await check({ ...base, name: 'prefill default: the other kernels', sliceWidths: [64] }, ['shrink', 'expand_vec4'])
    },
    SLOW,
  )

  it(
    'forced split-K and tiles: KG 1 and 32, A read directly on prefill tiles, B rows per k step, wide expand tiles',
    async () => {
      await check({ ...base, name: 'KG 1' }, TILES, { tileKernels: true, shrink: { KG: 1 } })
      await check({ ...base, name: 'KG 32, in 1024', inFeatures: 1024, rank: 8, tokens: 20 }, TILES, {
        tileKernels: true,
        shrink: { KG: 32 },
      })
      await check({ ...base, name: 'KG 3 (uneven chunks)', inFeatures: 260 }, TILES, { tileKernels: true, shrink: { KG: 3 } })
      await check({ ...base, name: 'prefill, A unstaged', rank: 16 }, TILES, { tileKernels: true, shrink: { STAGE: 0, KB: 4 } })
      await check({ ...base, name: 'decode, 16 rank rows, 64 k threads', tokens: 3, rank: 20, pattern: 'distinct' }, TILES, {
        shrink: { RT: 16, RC: 16, KS: 64 },
      })
      // B rows in flight per k step: 8 (steps of 8, then 4, then singles at rank 29), 16 or 4 give the same bits
      const decode = { ...base, name: 'decode r29 in 4096', tokens: 4, rank: 29, pattern: 'distinct' as const, slots: 4, inFeatures: 4096 }
      const ku8 = await check({ ...decode, name: `${decode.name} KU 8` }, TILES)
      for (const KU of [16, 4]) {
        const other = await check({ ...decode, name: `${decode.name} KU ${KU}` }, TILES, { expand: { KU } })
        expect(new Uint32Array(other.buffer), `KU ${KU} against 8: same bits`).toEqual(new Uint32Array(ku8.buffer))
      }
      // y read where it is written instead of before the k loop: the same bits (decode, and a prefill tile)
      const late = await check({ ...decode, name: `${decode.name} y late` }, TILES, { prefetchY: false })
      expect(new Uint32Array(late.buffer), 'y late against early: same bits').toEqual(new Uint32Array(ku8.buffer))
      const prefill = { ...base, name: 'prefill r16', rank: 16 }
      const early = await check(prefill, TILES, { tileKernels: true })
      const later = await check({ ...prefill, name: 'prefill r16 y late' }, TILES, { tileKernels: true, prefetchY: false })
      expect(new Uint32Array(later.buffer), 'prefill: same bits').toEqual(new Uint32Array(early.buffer))
      // k split over threads of the decode expand: 2, 3 (uneven ranges), 8 (ranks under KT leave
      // threads without k), each against the reference and stable from run to run
      for (const KT of [2, 3, 8]) await check({ ...decode, name: `${decode.name} KT ${KT}` }, TILES, { expand: { KT } })
      await check({ ...decode, name: 'decode r5 KT 8', rank: 5, tokens: 2 }, TILES, { expand: { KT: 8 } })
      await check({ ...decode, name: 'decode r64 KT 4 KU 16', rank: 64, tokens: 3 }, TILES, { expand: { KT: 4, KU: 16 } })
      await check({ ...base, name: 'expand 1 x 64 quads', rank: 16 }, TILES, {
        tileKernels: true,
        expand: { EM: 1, MT: 16, NW: 64, NQ: 1 },
      })
    },
    SLOW,
  )

  it(
    'where the tile kernels do not apply: the other kernels (ranks over 64, in % 4, odd widths, several adapters per token)',
    async () => {
      await check({ ...base, name: 'r128', rank: 128, tokens: 8 }, ['shrink', 'expand_vec4'])
      await check({ ...base, name: 'in 258', inFeatures: 258, sliceWidths: [64], tokens: 3, pattern: 'distinct' }, [
        'shrink',
        'expand_tile',
      ])
      await check({ ...base, name: 'width 66', sliceWidths: [66], tokens: 3, pattern: 'distinct' }, ['shrink_tile', 'expand'])
      await check({ ...base, name: 'K 2', adaptersPerToken: 2, sliceWidths: [64], tokens: 8, pattern: 'distinct', slots: 8 }, [
        'shrink_tile',
        'expand_multi',
      ])
      await check({ ...base, name: 'forced off', sliceWidths: [64] }, ['shrink', 'expand_vec4'], { tileKernels: false })
    },
    SLOW,
  )
})
