import { encodeHalf, DTYPE_BYTES } from '../dtype.js'
import type { LayerSpec, PreparedAdapter } from '../types.js'
import { createBuffer, USAGE } from './buffers.js'
import type { Strides } from './params.js'

/**
 * One layer's resident weights on the GPU, stored in the layer dtype:
 *   A     [maxAdapters][S][maxRank][inStride]   slot a, slice s, rank row r, input k
 *   B     [maxAdapters][maxRank][bStride]   slot a, rank k, output column (slices concatenated, each
 *         padded to an even width): B transposed, so threads on neighbouring columns read
 *         neighbouring words and a pair (j, j+1) of one rank row sits in one 32-bit word
 *   slots [maxAdapters] (rank, bitcast<u32>(scale)); rank 0 = empty slot
 * B is kept row-major per output column (as given), so both kernels run their inner loop along
 * a contiguous axis (k of A, rank of B), reading pairs of weights from one 32-bit word.
 * setAdapter uploads only its slot's rows; rows past a slot's rank are never read.
 */
export class LayerWeights {
  readonly A: GPUBuffer
  readonly B: GPUBuffer
  readonly slots: GPUBuffer
  private readonly bytes: number

  constructor(
    private readonly device: GPUDevice,
    private readonly spec: LayerSpec,
    private readonly strides: Strides,
    maxBinding: number,
  ) {
    this.bytes = DTYPE_BYTES[spec.weightDtype]
    const S = spec.sliceWidths.length
    const aBytes = spec.maxAdapters * S * spec.maxRank * strides.inStride * this.bytes
    const bBytes = spec.maxAdapters * spec.maxRank * strides.bStride * this.bytes
    this.A = createBuffer(device, aBytes, USAGE.storage, 'lora A', maxBinding)
    try {
      this.B = createBuffer(device, bBytes, USAGE.storage, 'lora B', maxBinding)
    } catch (e) {
      this.A.destroy()
      throw e
    }
    this.slots = createBuffer(device, spec.maxAdapters * 8, USAGE.storage, 'lora slots', maxBinding)
    device.queue.writeBuffer(this.slots, 0, new Uint32Array(spec.maxAdapters * 2))
  }

  set(slot: number, adapter: PreparedAdapter): void {
    const { spec, strides } = this
    const r = adapter.rank
    const S = spec.sliceWidths.length
    const inF = spec.inFeatures
    for (let s = 0; s < S; s++) {
      // A rows 0..r-1 of (slot, s): inFeatures values each, padded to inStride
      const rows = new Float32Array(r * strides.inStride)
      if (strides.inStride === inF) rows.set(adapter.A[s])
      else for (let k = 0; k < r; k++) rows.set(adapter.A[s].subarray(k * inF, (k + 1) * inF), k * strides.inStride)
      const row0 = (slot * S + s) * spec.maxRank
      this.write(this.A, row0 * strides.inStride, rows)
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
    this.write(this.B, slot * spec.maxRank * bs, bt)
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
    this.A.destroy()
    this.B.destroy()
    this.slots.destroy()
  }
}
