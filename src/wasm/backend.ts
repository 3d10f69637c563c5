import { type Backend, type BackendLayer, CHUNK_SIZE } from '../backend.js'
import { DTYPE_BYTES, encodeHalf } from '../dtype.js'
import type { SegmentPlan } from '../metadata.js'
import type { LayerSpec, PreparedAdapter } from '../types.js'
import { loadWasm, type WasmExports, type WasmModuleOptions, type WasmVariant } from './loader.js'
import { applyGather, packGatherA } from './gather.js'
import { packPanels, packShrinkA } from './layout.js'
import { WasmHostMemory } from './host-memory.js'
import { WasmMemory } from './memory.js'
import { align16, DTYPE_CODE, SEGMENT_BYTES, SLOT_BYTES, writeSegments } from './records.js'

/** The WebAssembly SIMD backend: all weights live in the module's linear memory. */
export class WasmBackend implements Backend {
  readonly name = 'wasm' as const
  readonly chunkSize = CHUNK_SIZE
  readonly isSoftware = false
  readonly lost = false
  readonly device = null
  readonly transfers = null
  readonly threads = 1
  readonly maxCallBuffer = Number.POSITIVE_INFINITY
  readonly threadsUnavailableReason = null
  readonly kernels = null
  readonly memory: WasmMemory
  readonly hostMemory: WasmHostMemory

  constructor(
    readonly exports: WasmExports,
    readonly variant: WasmVariant,
  ) {
    this.memory = new WasmMemory(exports.memory, exports.heapBase())
    this.hostMemory = new WasmHostMemory(this.memory)
  }

  partsFor(): number {
    return 1
  }

  forceParts(): void {}

  settled(): Promise<void> {
    return Promise.resolve()
  }

  createLayer(spec: LayerSpec): WasmLayer {
    return new WasmLayer(this, spec)
  }

  dispose(): void {
    this.hostMemory.dispose()
  }
}

/** Load the kernels and create the single-threaded backend (src/wasm/threads/ composes it for threads). */
export async function createWasmBackend(options?: WasmModuleOptions): Promise<WasmBackend> {
  const { exports, variant } = await loadWasm(options)
  return new WasmBackend(exports, variant)
}

interface SlotStorage {
  /** W [numSlices * rank x inF]: A of every slice stacked. */
  a: number
  /** W: per slice s, B_s transposed to [rank x n_s], slices one after another. */
  bt: number
}

/** One layer's weights in linear memory, plus its slot table for the kernel. */
export class WasmLayer implements BackendLayer {
  /** The layer's slot table in linear memory (assembly/sgmv.ts SLOT_BYTES per slot). */
  readonly slotTable: number
  /** [numSlices] i32 slice widths in linear memory. */
  readonly widths: number
  private readonly storage: (SlotStorage | null)[]
  private disposed = false

  constructor(
    readonly backend: WasmBackend,
    readonly spec: LayerSpec,
  ) {
    const mem = backend.memory
    this.slotTable = mem.alloc(spec.maxAdapters * SLOT_BYTES)
    this.widths = mem.alloc(spec.sliceWidths.length * 4)
    mem.u8.fill(0, this.slotTable, this.slotTable + spec.maxAdapters * SLOT_BYTES)
    mem.i32.set(spec.sliceWidths, this.widths >> 2)
    this.storage = new Array(spec.maxAdapters).fill(null)
  }

  setAdapter(slot: number, adapter: PreparedAdapter): void {
    const { spec } = this
    const mem = this.backend.memory
    const wb = DTYPE_BYTES[spec.weightDtype]
    const { rank } = adapter
    const S = spec.sliceWidths.length
    const a = mem.alloc(S * rank * spec.inFeatures * wb)
    let bt: number
    try {
      bt = mem.alloc(rank * spec.outFeatures * wb)
    } catch (e) {
      mem.release(a)
      throw e
    }
    // A: slices stacked row-wise, in the shrink's quad layout
    this.write(
      a,
      spec.embedding ? packGatherA(adapter.A[0], rank, spec.inFeatures) : packShrinkA(adapter.A, rank, spec.inFeatures, spec.weightDtype),
    )
    // B: each slice transposed and packed in 8-column panels (see assembly/expand.ts)
    let off = bt
    for (let s = 0; s < S; s++) {
      const n = spec.sliceWidths[s]
      this.write(off, packPanels(adapter.B[s], n, rank, spec.weightDtype))
      off += rank * n * wb
    }
    const old = this.storage[slot]
    const e = (this.slotTable >> 2) + slot * (SLOT_BYTES >> 2)
    mem.i32[e] = rank
    mem.f32[e + 1] = adapter.scale
    mem.i32[e + 2] = a
    mem.i32[e + 3] = bt
    this.storage[slot] = { a, bt }
    if (old) {
      mem.release(old.a)
      mem.release(old.bt)
    }
  }

  /** Store f32 values at byte address p in the layer's dtype. */
  private write(p: number, values: Float32Array): void {
    const mem = this.backend.memory
    const dtype = this.spec.weightDtype
    if (dtype === 'f32') mem.f32.set(values, p >> 2)
    else encodeHalf(values, dtype, mem.u16.subarray(p >> 1, (p >> 1) + values.length))
  }

  clearAdapter(slot: number): void {
    const old = this.storage[slot]
    if (!old) return
    const mem = this.backend.memory
    const e = (this.slotTable >> 2) + slot * (SLOT_BYTES >> 2)
    mem.i32.fill(0, e, e + (SLOT_BYTES >> 2))
    this.storage[slot] = null
    mem.release(old.a)
    mem.release(old.bt)
  }

  apply(x: Float32Array | Int32Array, y: Float32Array, plan: SegmentPlan): void {
    const N = plan.rows.length
    if (N === 0) return
    // an embedding layer: x holds token ids
    if (x instanceof Int32Array) {
      applyGather(this.backend, this.spec, this.slotTable, x, y, plan)
      return
    }
    const { spec } = this
    const T = plan.numTokens
    // host arrays (runtime.hostArray) are used in place; their addresses stay valid if scratch grows
    const xAt = this.backend.hostMemory.addressOf(x)
    const yAt = this.backend.hostMemory.addressOf(y)
    const numSeg = plan.segSlot.length
    let longest = 0
    for (let g = 0; g < numSeg; g++) longest = Math.max(longest, plan.segLength[g])
    const S = spec.sliceWidths.length
    // one work area: x | y | rows | segments | entry weights | H | decoded weights
    const xBytes = xAt >= 0 ? 0 : T * spec.inFeatures * 4
    const yBytes = yAt >= 0 ? 0 : T * spec.outFeatures * 4
    const rowsBytes = align16(N * 4)
    const segBytes = align16(numSeg * SEGMENT_BYTES)
    const wBytes = plan.weights ? align16(N * 4) : 0
    const hBytes = align16(longest * S * spec.maxRank * 4)
    // 16-bit weights of a long segment are decoded to f32 once (assembly/sgmv.ts): room for one slot
    const decode = spec.weightDtype !== 'f32' && longest >= (this.backend.exports.DECODE_MIN.value as number)
    const decodeBytes = decode ? (S * spec.maxRank * spec.inFeatures + spec.maxRank * spec.outFeatures) * 4 : 0
    const base = this.backend.hostMemory.scratch(align16(xBytes) + align16(yBytes) + rowsBytes + segBytes + wBytes + hBytes + decodeBytes)
    const xs = base
    const ys = xs + align16(xBytes)
    const rp = ys + align16(yBytes)
    const xp = xAt >= 0 ? xAt : xs
    const yp = yAt >= 0 ? yAt : ys
    const sp = rp + rowsBytes
    const wp = sp + segBytes
    const hp = wp + wBytes
    const mem = this.backend.memory
    const f32 = mem.f32
    const i32 = mem.i32
    if (xAt < 0) f32.set(x, xp >> 2)
    if (yAt < 0) f32.set(y, yp >> 2)
    i32.set(plan.rows, rp >> 2)
    if (plan.weights) f32.set(plan.weights, wp >> 2)
    writeSegments(i32, sp, plan)
    this.backend.exports.sgmv(
      DTYPE_CODE[spec.weightDtype],
      xp,
      yp,
      spec.inFeatures,
      spec.outFeatures,
      rp,
      sp,
      numSeg,
      this.slotTable,
      this.widths,
      S,
      hp,
      decode ? hp + hBytes : 0,
      plan.weights ? wp : 0,
    )
    if (yAt < 0) y.set(mem.f32.subarray(yp >> 2, (yp >> 2) + T * spec.outFeatures))
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (let s = 0; s < this.storage.length; s++) this.clearAdapter(s)
    this.backend.memory.release(this.slotTable)
    this.backend.memory.release(this.widths)
  }
}
