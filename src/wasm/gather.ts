/**
 * Embedding layers on the wasm backend: A stored transposed for the gather (assembly/gather.ts),
 * and the call that runs it. The slot table and B's panels are those of a linear layer.
 */
import type { SegmentPlan } from '../metadata.js'
import type { LayerSpec } from '../types.js'
import type { WasmExports } from './loader.js'
import type { WasmHostMemory } from './host-memory.js'
import type { WasmMemory } from './memory.js'
import { align16, DTYPE_CODE, SEGMENT_BYTES, writeSegments } from './records.js'

/** What the gather needs of the wasm backend: its kernels, their memory and the per-call work area. */
interface WasmStorage {
  readonly exports: WasmExports
  readonly memory: WasmMemory
  readonly hostMemory: Pick<WasmHostMemory, 'scratch'>
}

/** A [rank x vocab] (PEFT's lora_embedding_A) -> [vocab x rank]: a token's column is contiguous. */
export function packGatherA(A: Float32Array, rank: number, vocab: number): Float32Array {
  const out = new Float32Array(rank * vocab)
  for (let k = 0; k < rank; k++) for (let v = 0; v < vocab; v++) out[v * rank + k] = A[k * vocab + v]
  return out
}

/**
 * y[row_e] += w_e * scale * B A[:, tokens[row_e]] for every entry of the plan.
 * @param tokens [T] token ids (validated: 0 <= id < spec.inFeatures)
 * @param y      [T * outFeatures], updated in place
 */
export function applyGather(
  backend: WasmStorage,
  spec: LayerSpec,
  slotTable: number,
  tokens: Int32Array,
  y: Float32Array,
  plan: SegmentPlan,
): void {
  const N = plan.rows.length
  if (N === 0) return
  const T = plan.numTokens
  const numSeg = plan.segSlot.length
  let longest = 0
  for (let g = 0; g < numSeg; g++) longest = Math.max(longest, plan.segLength[g])
  // one work area: tokens | y | rows | segments | entry weights | H
  const sizes = [T * 4, T * spec.outFeatures * 4, N * 4, numSeg * SEGMENT_BYTES, plan.weights ? N * 4 : 0, longest * spec.maxRank * 4].map(
    align16,
  )
  const base = backend.hostMemory.scratch(sizes.reduce((a, b) => a + b, 0))
  const at: number[] = []
  sizes.reduce((p, s) => (at.push(p), p + s), base)
  const [tp, yp, rp, sp, wp, hp] = at
  const { i32, f32 } = backend.memory
  i32.set(tokens.subarray(0, T), tp >> 2)
  f32.set(y, yp >> 2)
  i32.set(plan.rows, rp >> 2)
  writeSegments(i32, sp, plan)
  if (plan.weights) f32.set(plan.weights, wp >> 2)
  backend.exports.gather(DTYPE_CODE[spec.weightDtype], tp, yp, spec.outFeatures, rp, sp, numSeg, slotTable, hp, plan.weights ? wp : 0)
  y.set(backend.memory.f32.subarray(yp >> 2, (yp >> 2) + T * spec.outFeatures))
}
