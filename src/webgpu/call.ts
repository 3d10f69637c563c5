import type { SegmentPlan } from '../metadata.js'
import type { LayerSpec } from '../types.js'
import { USAGE, type BufferPool } from './buffers.js'
import { buildCallMeta, longestSegment } from './meta.js'
import { packParams, PARAMS_BYTES, type Strides } from './params.js'
import type { PipelineCache } from './pipelines.js'
import type { WeightStorage } from './shaders.js'
import type { LayerWeights } from './weights.js'
import { expandDispatch, expandTiling } from './programs/expand.js'
import { EXPAND_MULTI_TILING, expandMultiDispatch } from './programs/expand_multi.js'
import { type CallShape, type Dispatch, tileEntries } from './programs/program.js'
import { shrinkDispatch, shrinkTiling } from './programs/shrink.js'

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

/**
 * Choose kernels and tiles for the plan, upload its metadata and params, and fetch the pipelines.
 * Kernel choice: the shrink always; then the segment-major expand when every token has one
 * adapter, else the token-major expand_multi (no write races when a token has several).
 * The plan must have at least one entry.
 */
export async function prepareCall(ctx: CallContext, plan: SegmentPlan, x: GPUBuffer, y: GPUBuffer): Promise<PreparedCall> {
  const { spec, pool, device } = ctx
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

  const params = pool.acquire(PARAMS_BYTES, USAGE.uniform, 'params')
  device.queue.writeBuffer(params, 0, packParams(spec, ctx.strides, meta))
  const metaBuf = pool.acquire(meta.data.byteLength, USAGE.storage, 'meta')
  device.queue.writeBuffer(metaBuf, 0, meta.data as Int32Array<ArrayBuffer>)
  const hBytes = meta.numEntries * shape.numSlices * ctx.strides.rankStride * 4
  const h = pool.acquire(hBytes, USAGE.storage, 'h')

  const { A, B, slots } = ctx.weights
  const dispatches = [shrinkDispatch(ctx.storage, shrinkTiling(tileM), shape, meta.numTiles, { params, x, A, slots, meta: metaBuf, h })]
  const expandBuffers = { params, h, B, slots, meta: metaBuf, y }
  dispatches.push(
    meta.maxEntriesPerToken > 1
      ? expandMultiDispatch(ctx.storage, EXPAND_MULTI_TILING, shape, meta.numTokens, expandBuffers)
      : expandDispatch(ctx.storage, expandTiling(tileM), shape, meta.numTiles, expandBuffers),
  )
  const scratch = [params, metaBuf, h]
  try {
    const pipelines = await Promise.all(dispatches.map((d) => ctx.pipelines.get(d.spec)))
    return { dispatches, pipelines, scratch }
  } catch (e) {
    for (const b of scratch) pool.release(b)
    throw e
  }
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
