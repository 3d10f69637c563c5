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
  bindGroups: Map<string, GPUBindGroup>
  /** weigh.wgsl's bind groups by (h and ring generations, bytes of weights bound). */
  weighGroups: Map<string, GPUBindGroup>
  /** The bind group of the last call (a stream of calls on the same buffers skips the key). */
  lastBinding?: { group: SlotGroup; x: GPUBuffer; y: GPUBuffer; h: GPUBuffer; ring: GPUBuffer; bindGroup: GPUBindGroup }
}

const MAX_BIND_GROUPS = 64

/**
 * The bind group of one slot group and buffer pair (cached), shared by the call's shrink, fold,
 * expand or fused dispatch (shared.ts kernelLayout): 0 params and 4 metadata in the ring (at
 * dynamic offsets), 1 x, 2 A, 3 slots, 5 h, 6 B, 7 y.
 */
export function bindGroupFor(ctx: Bindings, group: SlotGroup, x: GPUBuffer, y: GPUBuffer, h: GPUBuffer): GPUBindGroup {
  const { shared } = ctx
  const ring = shared.ring
  const last = ctx.lastBinding
  if (last && last.group === group && last.x === x && last.y === y && last.h === h && last.ring === ring.buffer) return last.bindGroup
  const key = `${group.slotBase}|${bufferId(x)}|${bufferId(y)}|${shared.h.generation}|${ring.generation}`
  let bindGroup = ctx.bindGroups.get(key)
  if (!bindGroup) {
    if (ctx.bindGroups.size >= MAX_BIND_GROUPS) ctx.bindGroups.clear()
    bindGroup = ctx.device.createBindGroup({
      layout: shared.layout,
      entries: [
        { binding: 0, resource: { buffer: ring.buffer, offset: 0, size: PARAMS_BYTES } },
        { binding: 1, resource: { buffer: x } },
        { binding: 2, resource: { buffer: group.A } },
        { binding: 3, resource: { buffer: ctx.weights.slots } },
        { binding: 4, resource: { buffer: ring.buffer, offset: 0, size: ring.window } },
        { binding: 5, resource: { buffer: h } },
        { binding: 6, resource: { buffer: group.B } },
        { binding: 7, resource: { buffer: y } },
      ],
    })
    ctx.bindGroups.set(key, bindGroup)
  }
  ctx.lastBinding = { group, x, y, h, ring: ring.buffer, bindGroup }
  return bindGroup
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
