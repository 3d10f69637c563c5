/**
 * GPU-resident data on a backend without a device: ids read back before the plan is built, and x
 * and y read back, run on the host and y written back, in queue order, through the WebGPU
 * backend's transfers.
 */
import type { BackendLayer, HostMemory, HostTransfers } from './backend.js'
import { LoraError } from './errors.js'
import type { SegmentPlan } from './metadata.js'
import type { ApplyOptions, LayerSpec } from './types.js'
import { checkAdaptersPerToken, checkApply, checkInt, checkTokenWeights, isGpuBuffer } from './validate.js'

/**
 * ids given as a GPUBuffer: check it and options.tokens against x and y first (nothing is read
 * when they disagree), then read its first T * K values back, in queue order.
 */
export async function readIds(
  transfers: HostTransfers | null,
  spec: LayerSpec,
  ids: GPUBuffer,
  options: ApplyOptions,
  x: unknown,
  y: unknown,
): Promise<{ ids: Int32Array; T: number; K: number; weights: Float32Array | undefined }> {
  if (!transfers) throw new LoraError('DEVICE_LOST', 'ids is a GPUBuffer but the runtime has no working WebGPU device')
  if (options.tokens === undefined) {
    throw new LoraError('INVALID_ARGUMENT', `ids is a GPUBuffer (${ids.size} bytes): options.tokens (T) is required`)
  }
  const K = checkAdaptersPerToken('options.adaptersPerToken', options.adaptersPerToken ?? 1)
  const T = checkInt('options.tokens', options.tokens, 0, 2 ** 24)
  if (ids.size < T * K * 4) {
    throw new LoraError(
      'SHAPE_MISMATCH',
      `ids: GPUBuffer of ${ids.size} bytes, need tokens * adaptersPerToken * 4 = ${T} * ${K} * 4 = ${T * K * 4}`,
    )
  }
  // x and y are checked against T before the read
  checkApply(spec, x, y, new Int32Array(T * K), K, T)
  // the caller may reuse its weights array once apply() has returned: copied before the await
  const weights = options.weights === undefined ? undefined : checkTokenWeights(options.weights, T * K).slice()
  const floats = await transfers.read(ids, T * K, 'ids')
  return { ids: new Int32Array(floats.buffer, floats.byteOffset, T * K), T, K, weights }
}

/** GPU-resident x and y on a CPU backend's layer: read them back, run, write y back (queue order kept). */
export async function applyThroughHost(
  transfers: HostTransfers | null,
  spec: LayerSpec,
  layer: BackendLayer,
  x: Float32Array | Int32Array | GPUBuffer,
  y: Float32Array | GPUBuffer,
  plan: SegmentPlan,
): Promise<void> {
  if (!transfers) throw new LoraError('DEVICE_LOST', 'x or y is a GPUBuffer but the runtime has no working WebGPU device')
  if (isGpuBuffer(y)) transfers.checkWritable(y)
  const T = plan.numTokens
  // both reads are submitted before this returns: later work queued by the caller comes after them
  const [xs, ys] = await Promise.all([
    isGpuBuffer(x) ? transfers.read(x, T * (spec.embedding ? 1 : spec.inFeatures), 'x') : x,
    isGpuBuffer(y) ? transfers.read(y, T * spec.outFeatures, 'y') : y,
  ])
  // an embedding layer's x holds i32 token ids: the same bytes, seen as such
  const xIn = spec.embedding && xs instanceof Float32Array ? new Int32Array(xs.buffer, xs.byteOffset, xs.length) : xs
  await layer.apply(xIn, ys, plan)
  if (isGpuBuffer(y)) transfers.write(y, ys)
}

/** A view of the wasm memory is taken as x or y only inside a HostArray: its address, or -1 for other arrays (HostMemory.addressOf). */
export function checkInPlace(memory: HostMemory, name: string, v: Float32Array): number {
  const at = memory.addressOf(v)
  if (at === -2) {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `${name} (Float32Array[${v.length}] at byte ${v.byteOffset}) is a view of the runtime's wasm memory outside every HostArray (rt.hostArray)`,
    )
  }
  return at
}
