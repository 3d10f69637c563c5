/**
 * The subgroup path of the tree kernels (shaders/shrink_tile.wgsl and shaders/fused_tile.wgsl, tiles
 * 'discrete'): where the device has `subgroups` (lavapipe: 8 lanes) the steps of the tree below the
 * subgroup size run in registers. Each call runs with the device's lanes, without subgroups, and
 * with a lane count other than the device's (every workgroup then finds its subgroups otherwise
 * and takes workgroup memory): each against the float64 reference, all with the same bits. The
 * kernels' per-workgroup check (lanesLow) is run alone: it opens for the device's lanes only.
 * Trees of 32 and 8 threads (more than and as many as lavapipe's lanes), rounds of several rank
 * rows, tiles of 1-16 entries. Without a WebGPU adapter it is skipped (test/needs.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWebGpuBackend, type WebGpuBackend } from '../src/webgpu/index.js'
import type { GpuLayer } from '../src/webgpu/layer.js'
import type { TileTuning } from '../src/webgpu/programs/choose.js'
import { specialise } from '../src/webgpu/shaders.js'
import { checkTuned } from './gpu-buffers.js'
import { type Case, materialise } from './grid.js'
import { has } from './needs.js'

const gpuHere = await has('webgpu')
let backend: WebGpuBackend | undefined
let lanes = 0
beforeAll(async () => {
  if (!gpuHere) return
  backend = await createWebGpuBackend({ kernels: 'discrete' })
  const layer = backend.createLayer(materialise({ ...base, name: 'probe' }).spec) as GpuLayer
  lanes = layer.ctx.subgroupSize
  layer.dispose()
})
afterAll(() => backend?.dispose())

const base: Omit<Case, 'name'> = {
  seed: 5,
  inFeatures: 512,
  sliceWidths: [64, 20],
  rank: 16,
  tokens: 1,
  slots: 1,
  pattern: 'identical',
  dtype: 'f32',
  adaptersPerToken: 1,
}

/** y of the case with the tuning, checked against the reference; its tree kernel's SG override checked. */
async function run(c: Case, tuning: TileTuning, shader: string, SG: number | undefined): Promise<Uint32Array> {
  const { y } = await checkTuned(backend!, c, tuning, (cp) => {
    const spec = cp.specs.find((s) => s.shader === shader)
    expect(spec, `${c.name}: ${shader} chosen`).toBeDefined()
    expect(spec?.overrides.SG, `${c.name}: SG`).toBe(SG)
    expect(!!spec?.subgroups, `${c.name}: compiled with subgroups`).toBe(SG !== undefined)
  })
  return new Uint32Array(y.buffer)
}

/** The case with the device's lanes, none, and twice the device's assumed (workgroup memory): the same bits. */
async function sameBits(c: Case, tuning: TileTuning, shader: string): Promise<void> {
  const own = await run(c, tuning, shader, lanes)
  const none = await run({ ...c, name: `${c.name}, no subgroups` }, { ...tuning, subgroups: false }, shader, undefined)
  expect(own, `${c.name}: lanes against none`).toEqual(none)
  const wrong = lanes * 2
  const other = await run({ ...c, name: `${c.name}, ${wrong} lanes assumed` }, { ...tuning, subgroups: wrong }, shader, wrong)
  expect(other, `${c.name}: ${wrong} lanes assumed against none`).toEqual(none)
}

/** lanesLow of shaders.ts for each of 64 threads, the kernel compiled with SG = `sg`. */
async function lanesLowOf(sg: number): Promise<number[]> {
  const device = backend!.device
  const source = `//@subgroups
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
override SG: u32 = 0u;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32/*@lanes*/) { out[lid] = lanesLow(lid, sgLane, sgSize); }`
  const module = device.createShaderModule({ code: specialise(source, 'f32', '', true) })
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main', constants: { SG: sg } } })
  const out = device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC })
  const read = device.createBuffer({ size: 256, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
  const enc = device.createCommandEncoder()
  const pass = enc.beginComputePass()
  pass.setPipeline(pipeline)
  pass.setBindGroup(
    0,
    device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }),
  )
  pass.dispatchWorkgroups(1)
  pass.end()
  enc.copyBufferToBuffer(out, 0, read, 0, 256)
  device.queue.submit([enc.finish()])
  await read.mapAsync(GPUMapMode.READ)
  const v = [...new Uint32Array(read.getMappedRange())]
  read.destroy()
  out.destroy()
  return v
}

const SLOW = 600_000

describe.runIf(gpuHere)('webgpu subgroups in the tree kernels', () => {
  it("the device reports its lanes (CI: lavapipe has subgroups), and the kernels' check opens only for them", async () => {
    if (process.env.CI) expect(lanes, 'lavapipe exposes subgroups through Dawn').toBeGreaterThan(1)
    expect(lanes & (lanes - 1), 'a power of two (or 0)').toBe(0)
    if (!lanes) return
    expect(await lanesLowOf(lanes), "the device's lanes: the register steps run").toEqual(new Array(64).fill(lanes))
    expect(await lanesLowOf(lanes * 2), 'twice as many assumed: workgroup memory').toEqual(new Array(64).fill(1))
    expect(await lanesLowOf(0), 'SG 0: workgroup memory').toEqual(new Array(64).fill(1))
  })

  it(
    'fused_tile: trees of 32 and 8 threads (more and as many as or fewer than the lanes), tiles of 1 and 4 entries',
    async () => {
      if (!lanes) return
      await sameBits({ ...base, name: 'fused T1 r16 (KS 32)' }, { fused: true }, 'fused_tile')
      const c = {
        ...base,
        name: 'fused T4 r37 bf16 (KS 8)',
        tokens: 4,
        rank: 37,
        slots: 2,
        pattern: 'distinct' as const,
        dtype: 'bf16' as const,
      }
      await sameBits(c, { fused: true }, 'fused_tile')
    },
    SLOW,
  )

  it(
    'shrink_tile: a decode tree of 32 threads, a prefill tile of 16 entries in rounds of 8 rank rows',
    async () => {
      if (!lanes) return
      await sameBits(
        { ...base, name: 'shrink_tile T3 r40', tokens: 3, rank: 40, slots: 2, pattern: 'distinct' },
        { fused: false },
        'shrink_tile',
      )
      const prefill = { ...base, name: 'shrink_tile T24 r24 tile 16 RC 8', tokens: 24, rank: 24, slots: 2, pattern: 'uniform' as const }
      await sameBits(prefill, { tileKernels: true, tileM: 16, shrink: { RC: 8 } }, 'shrink_tile')
    },
    SLOW,
  )
})
