/**
 * A small `Layer` (src/types.ts) on top of the float64 reference, for testing the pool without a
 * kernel backend. It checks what a real layer checks (slot range, rank <= maxRank, weight
 * lengths, empty slots, disposed) and records every call.
 */
import { LoraError } from '../src/errors.js'
import type { AdapterWeights, ApplyOptions, Layer, LayerOptions, LayerSpec } from '../src/types.js'
import { sgmv, type RefAdapter } from './reference.js'

export class FakeLayer implements Layer {
  readonly spec: LayerSpec
  readonly slots: (RefAdapter | undefined)[]
  readonly log: string[] = []
  disposed = false
  /** When set, apply waits for this promise before computing (to hold a batch "running"). */
  gate: Promise<void> | null = null

  constructor(o: LayerOptions) {
    const widths = typeof o.outFeatures === 'number' ? [o.outFeatures] : [...o.outFeatures]
    this.spec = {
      inFeatures: o.inFeatures,
      sliceWidths: widths,
      sliceOffsets: widths.map((_, i) => widths.slice(0, i).reduce((a, b) => a + b, 0)),
      outFeatures: widths.reduce((a, b) => a + b, 0),
      maxAdapters: o.maxAdapters,
      maxRank: o.maxRank,
      weightDtype: o.weightDtype ?? 'f32',
    }
    this.slots = new Array(o.maxAdapters).fill(undefined)
  }

  private live(slot?: number): void {
    if (this.disposed) throw new LoraError('DISPOSED', 'layer is disposed')
    if (slot !== undefined && !(Number.isInteger(slot) && slot >= 0 && slot < this.spec.maxAdapters))
      throw new LoraError('OUT_OF_RANGE', `slot ${slot}`)
  }

  setAdapter(slot: number, a: AdapterWeights): void {
    this.live(slot)
    const { inFeatures, outFeatures, maxRank } = this.spec
    if (a.rank < 1 || a.rank > maxRank) throw new LoraError('OUT_OF_RANGE', `rank ${a.rank} > maxRank ${maxRank}`)
    const A = a.A instanceof Float32Array ? a.A : a.A[0]
    const B = a.B instanceof Float32Array ? a.B : a.B[0]
    if (A.length !== a.rank * inFeatures || B.length !== outFeatures * a.rank) throw new LoraError('SHAPE_MISMATCH', 'A/B length')
    this.slots[slot] = { rank: a.rank, scale: a.scale, A: [new Float32Array(A)], B: [new Float32Array(B)] }
    this.log.push(`set ${slot}`)
  }

  clearAdapter(slot: number): void {
    this.live(slot)
    this.slots[slot] = undefined
    this.log.push(`clear ${slot}`)
  }

  hasAdapter(slot: number): boolean {
    this.live(slot)
    return this.slots[slot] !== undefined
  }

  async apply(x: Float32Array, y: Float32Array, ids: Int32Array, options: ApplyOptions = {}): Promise<void> {
    this.live()
    const K = options.adaptersPerToken ?? 1
    const T = ids.length / K
    if (x.length !== T * this.spec.inFeatures || y.length !== T * this.spec.outFeatures) throw new LoraError('SHAPE_MISMATCH', 'x/y')
    for (const id of ids) {
      if (id >= this.spec.maxAdapters || id < -1) throw new LoraError('OUT_OF_RANGE', `id ${id}`)
      if (id >= 0 && !this.slots[id]) throw new LoraError('SLOT_EMPTY', `slot ${id}`)
    }
    // Snapshot the slots now, as a real backend binds its buffers when the call starts.
    const layer = { inFeatures: this.spec.inFeatures, sliceWidths: [...this.spec.sliceWidths], adapters: [...this.slots] }
    this.log.push(`apply ${[...ids].join(',')} K=${K}`)
    if (this.gate) await this.gate
    if (this.disposed) throw new LoraError('DISPOSED', 'layer disposed during apply')
    const delta = sgmv(layer, x, ids, K, options.weights)
    for (let i = 0; i < y.length; i++) y[i] += delta[i]
  }

  encode(): void {
    throw new LoraError('BACKEND_UNAVAILABLE', 'the fake layer has no GPU')
  }

  dispose(): void {
    this.disposed = true
    this.log.push('dispose')
  }
}

/** A createLayer that keeps every layer it made, by creation order. */
export function fakeFactory(): { createLayer: (o: LayerOptions) => FakeLayer; layers: FakeLayer[]; options: LayerOptions[] } {
  const layers: FakeLayer[] = []
  const options: LayerOptions[] = []
  return {
    layers,
    options,
    createLayer: (o) => {
      const l = new FakeLayer(o)
      layers.push(l)
      options.push(o)
      return l
    },
  }
}
