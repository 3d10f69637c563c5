import type { CallMeta } from './meta.js'
import { PARAMS_BYTES } from './params.js'
import { WEIGH_PARAMS_BYTES } from './programs/weigh.js'
import { bufferId, type SharedCallState } from './shared.js'
import type { LayerWeights, SlotGroup } from './weights.js'

/** The bind groups of one layer's calls (the binding half of call.ts's CallContext). */
export interface Bindings {
  device: GPUDevice
  shared: SharedCallState
  weights: LayerWeights
  /** Bind groups by (slot group, x, y, h and ring generations): created once per buffer pair. */
  bindGroups: Map<string, [GPUBindGroup, GPUBindGroup]>
  /** weigh.wgsl's bind groups by (h and ring generations, bytes of weights bound). */
  weighGroups: Map<string, GPUBindGroup>
  /** fused_tile.wgsl's bind groups by (slot group, x, y, ring generation). */
  fusedGroups: Map<string, GPUBindGroup>
  /** The bind groups of the last call (a stream of calls on the same buffers skips the key). */
  lastBinding?: { group: SlotGroup; x: GPUBuffer; y: GPUBuffer; h: GPUBuffer; ring: GPUBuffer; bindGroups: [GPUBindGroup, GPUBindGroup] }
}

const MAX_BIND_GROUPS = 64

/** The shrink's and the expand's bind group for one slot group and buffer pair (cached). */
export function bindGroupsFor(ctx: Bindings, group: SlotGroup, x: GPUBuffer, y: GPUBuffer, h: GPUBuffer): [GPUBindGroup, GPUBindGroup] {
  const { shared } = ctx
  const last = ctx.lastBinding
  if (last && last.group === group && last.x === x && last.y === y && last.h === h && last.ring === shared.ring.buffer)
    return last.bindGroups
  const key = `${group.slotBase}|${bufferId(x)}|${bufferId(y)}|${shared.h.generation}|${shared.ring.generation}`
  let bgs = ctx.bindGroups.get(key)
  if (bgs) {
    ctx.lastBinding = { group, x, y, h, ring: shared.ring.buffer, bindGroups: bgs }
    return bgs
  }
  if (ctx.bindGroups.size >= MAX_BIND_GROUPS) ctx.bindGroups.clear()
  const make = (input: GPUBuffer, weights: GPUBuffer, output: GPUBuffer): GPUBindGroup =>
    ctx.device.createBindGroup({ layout: shared.layout, entries: kernelEntries(ctx, input, weights, output) })
  bgs = [make(x, group.A, h), make(h, group.B, y)]
  ctx.bindGroups.set(key, bgs)
  ctx.lastBinding = { group, x, y, h, ring: shared.ring.buffer, bindGroups: bgs }
  return bgs
}

/**
 * The entries of shared.ts kernelLayout: 0 params and 4 metadata in the ring (at dynamic offsets),
 * 1 input, 2 weights, 3 slots, 5 output.
 */
function kernelEntries(ctx: Bindings, input: GPUBuffer, weights: GPUBuffer, output: GPUBuffer): GPUBindGroupEntry[] {
  const ring = ctx.shared.ring
  return [
    { binding: 0, resource: { buffer: ring.buffer, offset: 0, size: PARAMS_BYTES } },
    { binding: 1, resource: { buffer: input } },
    { binding: 2, resource: { buffer: weights } },
    { binding: 3, resource: { buffer: ctx.weights.slots } },
    { binding: 4, resource: { buffer: ring.buffer, offset: 0, size: ring.window } },
    { binding: 5, resource: { buffer: output } },
  ]
}

/** fused_tile.wgsl's bind group for one slot group and buffer pair (cached): kernelEntries of x, A and y, and B at 6. */
export function fusedGroupFor(ctx: Bindings, group: SlotGroup, x: GPUBuffer, y: GPUBuffer): GPUBindGroup {
  const ring = ctx.shared.ring
  const key = `${group.slotBase}|${bufferId(x)}|${bufferId(y)}|${ring.generation}`
  let bg = ctx.fusedGroups.get(key)
  if (!bg) {
    if (ctx.fusedGroups.size >= MAX_BIND_GROUPS) ctx.fusedGroups.clear()
    bg = ctx.device.createBindGroup({
      layout: ctx.shared.fusedLayout,
      entries: [...kernelEntries(ctx, x, group.A, y), { binding: 6, resource: { buffer: group.B } }],
    })
    ctx.fusedGroups.set(key, bg)
  }
  return bg
}

export interface TileRun {
  group: SlotGroup
  tileStart: number
  tileCount: number
}

/** Runs of consecutive tiles whose slots share a weight group (tiles are sorted by slot). */
export function tileRunsByGroup(weights: LayerWeights, callMeta: CallMeta): TileRun[] {
  const runs: TileRun[] = []
  for (let i = 0; i < callMeta.numTiles; i++) {
    const group = weights.group(callMeta.data[callMeta.tilesOffset + 4 * i])
    const last = runs[runs.length - 1]
    if (last && last.group === group) last.tileCount++
    else runs.push({ group, tileStart: i, tileCount: 1 })
  }
  return runs
}

/**
 * weigh.wgsl's bind group for h and `bytes` of weights (cached): its params and weights are bound
 * at dynamic offsets into the ring, `bytes` wide (at least the ring's metadata window, which a
 * region always has room for after its head, where the weights lie).
 */
export function weighGroupFor(ctx: Bindings, h: GPUBuffer, weightBytes: number): GPUBindGroup {
  const { ring } = ctx.shared
  const bytes = Math.max(ring.window, Math.ceil(weightBytes / 256) * 256)
  const key = `${ctx.shared.h.generation}|${ring.generation}|${bytes}`
  let bg = ctx.weighGroups.get(key)
  if (!bg) {
    if (ctx.weighGroups.size >= MAX_BIND_GROUPS) ctx.weighGroups.clear()
    bg = ctx.device.createBindGroup({
      layout: ctx.shared.weighLayout,
      entries: [
        { binding: 0, resource: { buffer: ring.buffer, offset: 0, size: WEIGH_PARAMS_BYTES } },
        { binding: 1, resource: { buffer: ring.buffer, offset: 0, size: bytes } },
        { binding: 2, resource: { buffer: h } },
      ],
    })
    ctx.weighGroups.set(key, bg)
  }
  return bg
}
