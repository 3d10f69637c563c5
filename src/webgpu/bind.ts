import type { CallMeta } from './meta.js'
import { bufferId, type SharedCallState } from './shared.js'
import type { LayerWeights, SlotGroup } from './weights.js'

/** The bind groups of one layer's calls (the binding half of call.ts's CallContext). */
export interface Bindings {
  device: GPUDevice
  shared: SharedCallState
  weights: LayerWeights
  /** Bind groups by (slot group, x, y, h and ring generations): created once per buffer pair. */
  bindGroups: Map<string, [GPUBindGroup, GPUBindGroup]>
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
  const ring = shared.ring
  const params = { buffer: ring.buffer, offset: 0, size: 112 }
  const callMeta = { buffer: ring.buffer, offset: 0, size: ring.window }
  const slots = { buffer: ctx.weights.slots }
  const make = (input: GPUBuffer, weights: GPUBuffer, output: GPUBuffer): GPUBindGroup =>
    ctx.device.createBindGroup({
      layout: shared.layout,
      entries: [
        { binding: 0, resource: params },
        { binding: 1, resource: { buffer: input } },
        { binding: 2, resource: { buffer: weights } },
        { binding: 3, resource: slots },
        { binding: 4, resource: callMeta },
        { binding: 5, resource: { buffer: output } },
      ],
    })
  bgs = [make(x, group.A, h), make(h, group.B, y)]
  ctx.bindGroups.set(key, bgs)
  ctx.lastBinding = { group, x, y, h, ring: shared.ring.buffer, bindGroups: bgs }
  return bgs
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
