import type { SegmentPlan } from '../metadata.js'
import type { LayerSpec } from '../types.js'
import { buildCallMeta, type CallMeta, longestSegment, samePlan } from './meta.js'
import { packParams, type Strides } from './params.js'
import type { PipelineCache, PipelineSpec } from './pipelines.js'
import type { WeightStorage } from './shaders.js'
import { align, type RingRegion } from './shared.js'
import { type Bindings, bindGroupFor, tileRunsByGroup, weighGroupFor } from './bind.js'
import { WEIGH_SPEC, weighParams } from './programs/weigh.js'
import type { SlotGroup } from './weights.js'
import { choiceKey, chooseKernels, type KernelChoice, type TileTuning } from './programs/choose.js'
import { foldGroups } from './programs/fold.js'
import { gemmTile } from './programs/gemm.js'
import { type CallShape, type KernelProfile, tileEntries } from './programs/program.js'

/** One kernel launch, ready to record: pipeline, bind group, dynamic offsets, workgroups. */
export interface BoundDispatch {
  spec: PipelineSpec
  pipeline: GPUComputePipeline
  bindGroup: GPUBindGroup
  /**
   * Dynamic offsets in the ring of binding 0 (params) and 4 (metadata); for weigh.wgsl, of its
   * params and weights: a plain array, which Dawn's setBindGroup takes in half the time of a
   * Uint32Array and a range.
   */
  offsets: number[] | null
  groups: [number, number, number]
}

/** What one call records: its dispatches, in order (shrinks, a weigh, a fold, then expands; or one fused dispatch per slot group). */
export interface PreparedCall {
  dispatches: BoundDispatch[]
}

export interface CallContext extends Bindings {
  spec: LayerSpec
  strides: Strides
  storage: WeightStorage
  /** Rank of each slot as stored (0 = empty). */
  ranks: Int32Array
  pipelines: PipelineCache
  profile: KernelProfile
  /** Subgroup lanes of shrink_tile's and fused_tile's trees (0: none; see programs/choose.ts withLanes). */
  subgroupSize: number
  /** Kernel choices by (entries per tile, token-major expand, rank, tiles, weights): programs/choose.ts. */
  kernels: Map<string, KernelChoice>
  /** Tiles forced over the chosen ones (tuning runs, tests); clear `kernels` after a change. */
  tuning?: TileTuning
  /** The last call recorded on GPU buffers: the same batch on the same buffers reuses it (see `recordCall`). */
  last?: LastCall
}

/** A recorded call and what it was recorded for. */
interface LastCall {
  plan: SegmentPlan
  x: GPUBuffer
  y: GPUBuffer
  call: PreparedCall
  /** The ring region of its params and metadata (see MetaRing.intact) and the h buffer it binds. */
  region: RingRegion
  h: GPUBuffer
  /** The slot group of each shrink and expand pair (see `rebind`). */
  groups: SlotGroup[]
}

/** The host half of a call: kernel choice, tiles, metadata, and the pipelines (no GPU writes). */
export interface CallPlan {
  plan: SegmentPlan
  shape: CallShape
  tileM: number
  callMeta: CallMeta
  /** Tokens with several adapters: the token-major expand_multi. */
  multi: boolean
  /** The kernels, their tiles and workgroups. */
  choice: KernelChoice
  /** Split-K over workgroups of the shrink: h holds this many partials. */
  kg: number
  /** [N] per-entry weights (the plan's), applied to h by weigh.wgsl; null: none. */
  weights: Float32Array | null
  /** shrink (or gather), expand, and weigh when the call has weights. */
  specs: PipelineSpec[]
  /** Set once every pipeline exists (see `ensurePipelines`). */
  pipelines: GPUComputePipeline[] | null
}

/**
 * Choose kernels and tiles for the plan (programs/choose.ts, cached per kind of call): the
 * shrink, then the segment-major expand when every token has one adapter, else the token-major
 * expand_multi (no write races when a token has several). The plan must have an entry.
 */
export function planCall(ctx: CallContext, plan: SegmentPlan): CallPlan {
  const { spec } = ctx
  let maxUsedRank = 0
  for (let i = 0; i < plan.slots.length; i++) maxUsedRank = Math.max(maxUsedRank, ctx.ranks[plan.slots[i]])
  let maxSliceWidth = 0
  for (const n of spec.sliceWidths) maxSliceWidth = Math.max(maxSliceWidth, n)
  const shape: CallShape = {
    longestSegment: longestSegment(plan),
    maxUsedRank,
    maxSliceWidth,
    numSlices: spec.sliceWidths.length,
  }
  // the GEMM kernels on prefill segments where they apply (programs/gemm.ts), with their own tiles
  const gemmM = gemmTile(ctx.profile, spec, { longestSegment: shape.longestSegment, entries: plan.rows.length }, ctx.tuning)
  const tileM = gemmM || (ctx.tuning?.tileM ?? tileEntries(shape.longestSegment, ctx.profile))
  const callMeta = buildCallMeta(plan, tileM)
  const multi = callMeta.maxEntriesPerToken > 1
  const weights = plan.weights ?? null
  const { profile, storage, tuning } = ctx
  const workgroupBytes = ctx.device.limits.maxComputeWorkgroupStorageSize
  const weighted = weights !== null
  const input = {
    profile,
    storage,
    spec,
    shape,
    tileM,
    numTiles: callMeta.numTiles,
    multi,
    gemm: gemmM > 0,
    tuning,
    workgroupBytes,
    subgroupSize: ctx.subgroupSize,
    weighted,
  }
  const key = choiceKey(input)
  let choice = ctx.kernels.get(key)
  if (!choice) {
    if (ctx.kernels.size >= MAX_CHOICES) ctx.kernels.clear()
    choice = chooseKernels(input)
    if (weights) choice.specs.push(WEIGH_SPEC)
    if (choice.fold) choice.specs.push(choice.fold)
    ctx.kernels.set(key, choice)
  }
  const { specs } = choice
  const ready = specs.map((s) => ctx.pipelines.ready(s))
  const pipelines = ready.every((p) => p !== undefined) ? (ready as GPUComputePipeline[]) : null
  return { plan, shape, tileM, callMeta, multi, choice, kg: choice.kg, weights, specs, pipelines }
}

/** Kernel choices kept per layer (one per kind of call seen; cleared when full). */
const MAX_CHOICES = 64

/** Create the plan's pipelines (async, with compile errors as GPU_ERROR) if they are not ready. */
export async function ensurePipelines(ctx: CallContext, cp: CallPlan): Promise<void> {
  if (!cp.pipelines) cp.pipelines = await Promise.all(cp.specs.map((s) => ctx.pipelines.get(s)))
}

/**
 * The GPU half, synchronous: one writeBuffer of the call's params and metadata into the ring,
 * and the dispatches bound to x and y through cached bind groups. Nothing is created per call
 * once a (x, y) pair has been seen. Pipelines missing from the plan are created synchronously.
 */
export function bindCall(ctx: CallContext, cp: CallPlan, x: GPUBuffer, y: GPUBuffer): PreparedCall {
  const { spec, shared } = ctx
  const { callMeta, shape, kg } = cp
  const pipelines = cp.pipelines ?? (cp.pipelines = cp.specs.map((s) => ctx.pipelines.now(s)))
  const runs = tileRunsByGroup(ctx.weights, callMeta)
  const hPart = callMeta.numEntries * shape.numSlices * ctx.strides.rankStride
  const h = shared.h.get(kg * hPart * 4)
  const ring = shared.ring
  const callMetaBytes = callMeta.data.byteLength
  // region: a params block per slot group, [weighs: its params block, the weights per partial], metadata
  const weighBytes = cp.weights ? 256 + align(kg * cp.weights.byteLength) : 0
  const headBytes = runs.length * 256 + weighBytes
  // every word of the region is set (unused ones 0), so equal calls stage equal words (ring.place)
  const words = ring.stage(headBytes, callMetaBytes)
  words.fill(0, 0, align(headBytes + callMetaBytes) / 4)
  for (let g = 0; g < runs.length; g++) {
    const { group, tileStart } = runs[g]
    packParams(words, g * 64, spec, ctx.strides, callMeta, group, hPart)
    words[g * 64 + 6] = callMeta.tilesOffset + 4 * tileStart // this group's first tile
  }
  const w0 = runs.length * 64
  let wp: ReturnType<typeof weighParams> | null = null
  if (cp.weights) {
    // h[e] *= w[e] over the kg partials: they are kg * N entries of one h row each
    wp = weighParams(kg * callMeta.numEntries, shape.numSlices * ctx.strides.rankStride)
    words.set(wp.params, w0)
    const wf = new Float32Array(words.buffer, (w0 + 64) * 4, kg * cp.weights.length)
    for (let g = 0; g < kg; g++) wf.set(cp.weights, g * cp.weights.length)
  }
  new Int32Array(words.buffer, headBytes, callMeta.data.length).set(callMeta.data)
  const at = ring.place(headBytes, callMetaBytes)
  let weigh: BoundDispatch | null = null
  if (cp.weights && wp) {
    // its params block, then the weights: at dynamic offsets of one cached bind group
    const base = at.params + w0 * 4
    const bindGroup = weighGroupFor(ctx, h, kg * cp.weights.byteLength)
    weigh = { spec: cp.specs[2], pipeline: pipelines[2], bindGroup, offsets: [base, base + 256], groups: wp.groups }
  }

  const shrinks: BoundDispatch[] = []
  const expands: BoundDispatch[] = []
  // one shrink and one expand per slot group the batch uses (usually one group), or one fused dispatch
  for (let g = 0; g < runs.length; g++) {
    const { group, tileCount } = runs[g]
    const offsets = [at.params + 256 * g, at.callMeta]
    const groups = cp.choice.groups(shape, tileCount, callMeta.numTokens)
    const bindGroup = bindGroupFor(ctx, group, x, y, h)
    shrinks.push({ spec: cp.specs[0], pipeline: pipelines[0], bindGroup, offsets, groups: groups.shrink })
    if (!cp.choice.fused) expands.push({ spec: cp.specs[1], pipeline: pipelines[1], bindGroup, offsets, groups: groups.expand })
  }
  // the partials added once (after weighing, as the expands would add them), bound like the shrink
  const fold: BoundDispatch[] = []
  if (cp.choice.fold) {
    const i = cp.specs.length - 1
    fold.push({
      spec: cp.specs[i],
      pipeline: pipelines[i],
      bindGroup: shrinks[0].bindGroup,
      offsets: shrinks[0].offsets,
      groups: foldGroups(hPart),
    })
  }
  const call = { dispatches: [...shrinks, ...(weigh ? [weigh] : []), ...fold, ...expands] }
  ctx.last = { plan: cp.plan, x, y, call, region: at.region, h, groups: runs.map((r) => r.group) }
  return call
}

/**
 * The call of `plan` on x and y, ready to record: the last one again when it was made for the same
 * batch and its ring region is intact (no metadata built, nothing written: decode steps repeat
 * their batch), bound to x and y when they changed (cached bind groups), else planned and bound anew.
 */
export function recordCall(ctx: CallContext, plan: SegmentPlan, x: GPUBuffer, y: GPUBuffer): PreparedCall {
  const last = ctx.last
  if (last && last.h === ctx.shared.h.buffer && ctx.shared.ring.intact(last.region) && samePlan(last.plan, plan)) {
    if (last.x !== x || last.y !== y) rebind(ctx, last, x, y)
    return last.call
  }
  return bindCall(ctx, planCall(ctx, plan), x, y)
}

/**
 * The last call's dispatches on other x and y: the same kernels, workgroups and ring region, with
 * the bind groups of the new buffers (shrinks first, one per slot group, then a weigh, a fold, the expands).
 */
function rebind(ctx: CallContext, last: LastCall, x: GPUBuffer, y: GPUBuffer): void {
  const old = last.call.dispatches
  const dispatches = old.slice()
  // every dispatch but a weigh is bound to its slot group's bind group, the old one's replaced
  const renamed = new Map<GPUBindGroup, GPUBindGroup>()
  for (let g = 0; g < last.groups.length; g++) renamed.set(old[g].bindGroup, bindGroupFor(ctx, last.groups[g], x, y, last.h))
  for (let i = 0; i < old.length; i++) {
    const bindGroup = renamed.get(old[i].bindGroup)
    if (bindGroup) dispatches[i] = { ...old[i], bindGroup }
  }
  last.x = x
  last.y = y
  last.call = { dispatches }
}

/** planCall, its pipelines, then bindCall (the bench uses it to time kernels on its own buffers). */
export async function prepareCall(ctx: CallContext, plan: SegmentPlan, x: GPUBuffer, y: GPUBuffer): Promise<PreparedCall> {
  const cp = planCall(ctx, plan)
  await ensurePipelines(ctx, cp)
  return bindCall(ctx, cp, x, y)
}

/** Record the call's dispatches in one compute pass (kernels in order; y updated in place). */
export function encodeCall(encoder: GPUCommandEncoder, call: PreparedCall, timestampWrites?: GPUComputePassTimestampWrites): void {
  const pass = encoder.beginComputePass(timestampWrites ? { timestampWrites } : undefined)
  recordDispatches(pass, call)
  pass.end()
}

/**
 * Record the call's dispatches into an open compute pass. A bind group is set only where it differs
 * from the one before (same group and offsets: the shrink, fold and expand of one slot group); the
 * pass keeps it across pipelines of the same layout.
 */
export function recordDispatches(pass: GPUComputePassEncoder, call: PreparedCall): void {
  let bound: BoundDispatch | undefined
  for (const d of call.dispatches) {
    pass.setPipeline(d.pipeline)
    if (!bound || bound.bindGroup !== d.bindGroup || !sameOffsets(bound.offsets, d.offsets)) {
      if (d.offsets) pass.setBindGroup(0, d.bindGroup, d.offsets)
      else pass.setBindGroup(0, d.bindGroup)
      bound = d
    }
    pass.dispatchWorkgroups(d.groups[0], d.groups[1], d.groups[2])
  }
}

function sameOffsets(a: number[] | null, b: number[] | null): boolean {
  if (a === b) return true
  if (!a || !b || a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
