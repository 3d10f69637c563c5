import { encodeHalf, DTYPE_BYTES } from '../dtype.js'
import { LoraError } from '../errors.js'
import type { LayerSpec, PreparedAdapter } from '../types.js'
import { createBuffer, USAGE } from './buffers.js'
import type { Strides } from './params.js'

/** The weight buffers of one slot group. */
export interface SlotGroup {
  slotBase: number
  slotCount: number
  A: GPUBuffer
  B: GPUBuffer
}

/**
 * One layer's resident weights on the GPU, stored in the layer dtype, per slot group:
 *   A     [slots][S][maxRank][inStride]   slot a, slice s, rank row r, input k
 *   B     [slots][maxRank][bStride]       slot a, rank k, output column (slices concatenated, each
 *         padded to an even width): B transposed, so threads on neighbouring columns read
 *         neighbouring words and a pair (j, j+1) of one rank row sits in one 32-bit word
 *   slots [maxAdapters] (rank, bitcast<u32>(scale)); rank 0 = empty slot (one buffer, all groups)
 * Both kernels run their inner loop along a contiguous axis (k of A, columns of B).
 * Slot groups: a storage binding is capped (128 MiB on lavapipe and many GPUs), so the slots are
 * cut into groups whose A and B each fit one binding; a group's buffers are created on the first
 * setAdapter into it. A call dispatches once per group it uses (usually one).
 * setAdapter uploads only its slot's rows; rows past a slot's rank are never read.
 */
export class LayerWeights {
  readonly slots: GPUBuffer
  /** Slots per group. */
  readonly groupSize: number
  private readonly groups: (SlotGroup | undefined)[] = []
  private readonly bytes: number
  private readonly aSlotBytes: number
  private readonly bSlotBytes: number

  constructor(
    private readonly device: GPUDevice,
    private readonly spec: LayerSpec,
    private readonly strides: Strides,
    private readonly maxBinding: number,
  ) {
    this.bytes = DTYPE_BYTES[spec.weightDtype]
    const S = spec.sliceWidths.length
    this.aSlotBytes = S * spec.maxRank * strides.inStride * this.bytes
    this.bSlotBytes = spec.maxRank * strides.bStride * this.bytes
    const perSlot = Math.max(this.aSlotBytes, this.bSlotBytes)
    if (perSlot > maxBinding) {
      throw new LoraError(
        'OUT_OF_MEMORY',
        `one slot of this layer needs ${perSlot} bytes of weights in one binding; the device allows ${maxBinding}`,
      )
    }
    this.groupSize = Math.min(spec.maxAdapters, Math.floor(maxBinding / perSlot))
    this.slots = createBuffer(device, spec.maxAdapters * 8, USAGE.storage, 'lora slots', maxBinding)
    device.queue.writeBuffer(this.slots, 0, new Uint32Array(spec.maxAdapters * 2))
  }

  /** The group holding `slot` (its buffers are created on first use). */
  group(slot: number): SlotGroup {
    const g = Math.floor(slot / this.groupSize)
    let group = this.groups[g]
    if (!group) {
      const slotBase = g * this.groupSize
      const slotCount = Math.min(this.groupSize, this.spec.maxAdapters - slotBase)
      const A = createBuffer(this.device, slotCount * this.aSlotBytes, USAGE.storage, `lora A ${g}`, this.maxBinding)
      const B = createBuffer(this.device, slotCount * this.bSlotBytes, USAGE.storage, `lora B ${g}`, this.maxBinding)
      this.groups[g] = group = { slotBase, slotCount, A, B }
    }
    return group
  }

  set(slot: number, adapter: PreparedAdapter): void {
    const { spec, strides } = this
    const r = adapter.rank
    const S = spec.sliceWidths.length
    const { A, B, slotBase } = this.group(slot)
    const local = slot - slotBase
    const inF = spec.inFeatures
    for (let s = 0; s < S; s++) {
      // A rows 0..r-1 of (slot, s): inFeatures values each, padded to inStride
      const rows = new Float32Array(r * strides.inStride)
      if (strides.inStride === inF) rows.set(adapter.A[s])
      else for (let k = 0; k < r; k++) rows.set(adapter.A[s].subarray(k * inF, (k + 1) * inF), k * strides.inStride)
      const row0 = (local * S + s) * spec.maxRank
      this.write(A, row0 * strides.inStride, rows)
    }
    // B rows 0..r-1 of the slot, transposed: bt[k][bOffset_s + j] = B[s][j][k]
    const bs = strides.bStride
    const bt = new Float32Array(r * bs)
    for (let s = 0; s < S; s++) {
      const n = spec.sliceWidths[s]
      const src = adapter.B[s]
      const off = strides.bOffsets[s]
      for (let j = 0; j < n; j++) for (let k = 0; k < r; k++) bt[k * bs + off + j] = src[j * r + k]
    }
    this.write(B, local * spec.maxRank * bs, bt)
    this.setInfo(slot, r, adapter.scale)
  }

  clear(slot: number): void {
    this.setInfo(slot, 0, 0)
  }

  private setInfo(slot: number, rank: number, scale: number): void {
    const info = new Uint32Array(2)
    info[0] = rank
    new Float32Array(info.buffer, 4, 1)[0] = scale
    this.device.queue.writeBuffer(this.slots, slot * 8, info)
  }

  /** Write `values` (f32, already rounded to the dtype) at element `offset` in the layer dtype. */
  private write(buffer: GPUBuffer, offset: number, values: Float32Array): void {
    const dtype = this.spec.weightDtype
    const data = dtype === 'f32' ? values : encodeHalf(values, dtype)
    this.device.queue.writeBuffer(buffer, offset * this.bytes, data as Float32Array<ArrayBuffer>)
  }

  destroy(): void {
    for (const g of this.groups) {
      g?.A.destroy()
      g?.B.destroy()
    }
    this.slots.destroy()
  }
}
