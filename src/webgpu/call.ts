import type { SegmentPlan } from '../metadata.js'
import type { LayerSpec } from '../types.js'
import { USAGE, type BufferPool } from './buffers.js'
import { buildCallMeta, type CallMeta, longestSegment } from './meta.js'
import { packParams, PARAMS_BYTES, type Strides } from './params.js'
import type { PipelineCache } from './pipelines.js'
import type { WeightStorage } from './shaders.js'
import type { LayerWeights, SlotGroup } from './weights.js'
import { expandDispatch, expandKernel, expandSpec, expandTiling } from './programs/expand.js'
import { EXPAND_MULTI_TILING, expandMultiDispatch, expandMultiSpec } from './programs/expand_multi.js'
import { type CallShape, type Dispatch, tileEntries } from './programs/program.js'
import { gatherDispatch, gatherSpec } from './programs/gather.js'
import { shrinkDispatch, shrinkSpec, shrinkTiling } from './programs/shrink.js'
import { WEIGH_PARAMS_BYTES, WEIGH_SPEC, weighDispatch, weighParams } from './programs/weigh.js'

/** What one apply needs on the GPU besides x and y: uploaded metadata and the kernel launches. */
export interface PreparedCall {
  dispatches: Dispatch[]
  pipelines: GPUComputePipeline[]
  /** Pooled per-call buffers, released after submit. */
  scratch: GPUBuffer[]
}

export interface CallContext {
  device: GPUDevice
  spec: LayerSpec
  strides: Strides
  storage: WeightStorage
  weights: LayerWeights
  /** Rank of each slot as stored (0 = empty). */
  ranks: Int32Array
  pipelines: PipelineCache
  pool: BufferPool
}

/** The host half of a call: kernel choice, tiles, metadata, and the pipelines (no GPU writes). */
export interface CallPlan {
  shape: CallShape
  tileM: number
  meta: CallMeta
  /** Tokens with several adapters: the token-major expand_multi. */
  multi: boolean
  /** [N] per-entry weights (the plan's), applied to h by weigh.wgsl; null: none. */
  weights: Float32Array | null
  /** shrink, expand, and weigh when the call has weights. */
  pipelines: GPUComputePipeline[]
}

/**
 * Choose kernels and tiles for the plan and fetch their pipelines. Kernel choice: the shrink
 * always; then the segment-major expand when every token has one adapter, else the token-major
 * expand_multi (no write races when a token has several); with per-entry weights, weigh.wgsl
 * scales h between them. The plan must have an entry.
 * Synchronous when the pipelines exist, or with `now` (missing ones are created synchronously:
 * call it inside error scopes then); otherwise a promise.
 */
export function planCall(ctx: CallContext, plan: SegmentPlan, now = false): CallPlan | Promise<CallPlan> {
  const { spec } = ctx
  let maxUsedRank = 0
  for (let i = 0; i < plan.slots.length; i++) maxUsedRank = Math.max(maxUsedRank, ctx.ranks[plan.slots[i]])
  const shape: CallShape = {
    longestSegment: longestSegment(plan),
    maxUsedRank,
    maxSliceWidth: Math.max(...spec.sliceWidths),
    numSlices: spec.sliceWidths.length,
  }
  const tileM = tileEntries(shape.longestSegment)
  const meta = buildCallMeta(plan, tileM)
  const multi = meta.maxEntriesPerToken > 1
  const specs = [
    spec.embedding ? gatherSpec(ctx.storage) : shrinkSpec(ctx.storage, shrinkTiling(tileM)),
    multi ? expandMultiSpec(ctx.storage, EXPAND_MULTI_TILING) : segmentExpandSpec(ctx, tileM),
  ]
  if (plan.weights) specs.push(WEIGH_SPEC)
  const weights = plan.weights ?? null
  if (now) return { shape, tileM, meta, multi, weights, pipelines: specs.map((s) => ctx.pipelines.getNow(s)) }
  const ready = specs.map((s) => ctx.pipelines.cached(s))
  if (ready.every((p) => p !== undefined)) return { shape, tileM, meta, multi, weights, pipelines: ready as GPUComputePipeline[] }
  return Promise.all(specs.map((s) => ctx.pipelines.get(s))).then((pipelines) => ({ shape, tileM, meta, multi, weights, pipelines }))
}

/**
 * The GPU half, synchronous (so it can sit inside one set of error scopes with the submit):
 * upload metadata and params to pooled buffers and bind the dispatches to x and y.
 */
export function bindCall(ctx: CallContext, cp: CallPlan, x: GPUBuffer, y: GPUBuffer): PreparedCall {
  const { spec, pool, device } = ctx
  const { meta, shape, tileM } = cp
  const metaBuf = pool.acquire(meta.data.byteLength, USAGE.storage, 'meta')
  device.queue.writeBuffer(metaBuf, 0, meta.data as Int32Array<ArrayBuffer>)
  const hBytes = meta.numEntries * shape.numSlices * ctx.strides.rankStride * 4
  const h = pool.acquire(hBytes, USAGE.storage, 'h')
  const scratch = [metaBuf, h]
  try {
    const { slots } = ctx.weights
    const kernel = expandKernel(spec.sliceWidths)
    const shrinks: Dispatch[] = []
    const expands: Dispatch[] = []
    // one shrink and one expand per slot group the batch uses (usually one group)
    for (const { group, tileStart, tileCount } of tileRunsByGroup(ctx, meta)) {
      const params = pool.acquire(PARAMS_BYTES, USAGE.uniform, 'params')
      scratch.push(params)
      const offsets = { ...meta, tilesOffset: meta.tilesOffset + 4 * tileStart }
      device.queue.writeBuffer(params, 0, packParams(spec, ctx.strides, offsets, group))
      const { A, B } = group
      const sb = { params, x, A, slots, meta: metaBuf, h }
      shrinks.push(spec.embedding ? gatherDispatch(ctx.storage, shape, tileCount, sb) : shrinkDispatch(ctx.storage, shrinkTiling(tileM), shape, tileCount, sb))
      const eb = { params, h, B, slots, meta: metaBuf, y }
      expands.push(
        cp.multi
          ? expandMultiDispatch(ctx.storage, EXPAND_MULTI_TILING, shape, meta.numTokens, eb)
          : expandDispatch(ctx.storage, kernel, expandTiling(kernel, tileM), shape, tileCount, eb),
      )
    }
    const weighs: Dispatch[] = []
    if (cp.weights) {
      const hRow = shape.numSlices * ctx.strides.rankStride
      const { params: words, groups } = weighParams(meta.numEntries, hRow)
      const params = pool.acquire(WEIGH_PARAMS_BYTES, USAGE.uniform, 'weigh params')
      const weights = pool.acquire(cp.weights.byteLength, USAGE.storage, 'entry weights')
      scratch.push(params, weights)
      device.queue.writeBuffer(params, 0, words as Uint32Array<ArrayBuffer>)
      device.queue.writeBuffer(weights, 0, cp.weights as Float32Array<ArrayBuffer>)
      weighs.push(weighDispatch(groups, { params, weights, h }))
    }
    const dispatches = [...shrinks, ...weighs, ...expands]
    const pipelines = [...shrinks.map(() => cp.pipelines[0]), ...weighs.map(() => cp.pipelines[2]), ...expands.map(() => cp.pipelines[1])]
    return { dispatches, pipelines, scratch }
  } catch (e) {
    for (const b of scratch) pool.release(b)
    throw e
  }
}

/** The segment-major expand for this layer: column quads when every slice width allows them. */
function segmentExpandSpec(ctx: CallContext, tileM: number) {
  const kernel = expandKernel(ctx.spec.sliceWidths)
  return expandSpec(ctx.storage, kernel, expandTiling(kernel, tileM))
}

/** Runs of consecutive tiles whose slots share a weight group (tiles are sorted by slot). */
function tileRunsByGroup(ctx: CallContext, meta: CallMeta): { group: SlotGroup; tileStart: number; tileCount: number }[] {
  const runs: { group: SlotGroup; tileStart: number; tileCount: number }[] = []
  for (let i = 0; i < meta.numTiles; i++) {
    const group = ctx.weights.group(meta.data[meta.tilesOffset + 4 * i])
    const last = runs[runs.length - 1]
    if (last && last.group === group) last.tileCount++
    else runs.push({ group, tileStart: i, tileCount: 1 })
  }
  return runs
}

/** planCall then bindCall (the bench uses it to time kernels on its own buffers). */
export async function prepareCall(ctx: CallContext, plan: SegmentPlan, x: GPUBuffer, y: GPUBuffer): Promise<PreparedCall> {
  return bindCall(ctx, await planCall(ctx, plan), x, y)
}

/** Record the call's dispatches in one compute pass (kernels in order; y updated in place). */
export function encodeCall(
  device: GPUDevice,
  encoder: GPUCommandEncoder,
  call: PreparedCall,
  timestampWrites?: GPUComputePassTimestampWrites,
): void {
  const pass = encoder.beginComputePass(timestampWrites ? { timestampWrites } : {})
  call.dispatches.forEach((d, i) => {
    const pipeline = call.pipelines[i]
    pass.setPipeline(pipeline)
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: d.buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      }),
    )
    pass.dispatchWorkgroups(...d.groups)
  })
  pass.end()
}
