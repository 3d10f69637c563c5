import { createBuffer } from './buffers.js'
import { PARAMS_BYTES } from './params.js'
import { WEIGH_PARAMS_BYTES } from './programs/weigh.js'

const UNIFORM = 0x40
const STORAGE = 0x80
const COPY_DST = 0x8
const ALIGN = 256 // minUniformBufferOffsetAlignment / minStorageBufferOffsetAlignment (the most either may be)

export const align = (n: number): number => Math.ceil(n / ALIGN) * ALIGN

/** A stable small number per GPUBuffer (bind-group cache keys). */
const ids = new WeakMap<GPUBuffer, number>()
let nextId = 1
export function bufferId(b: GPUBuffer): number {
  let id = ids.get(b)
  if (id === undefined) ids.set(b, (id = nextId++))
  return id
}

/**
 * The one bind group layout of every LoRA kernel but weigh.wgsl: 0 params (uniform, dynamic
 * offset), 1 x, 2 A, 3 slots, 4 call metadata (dynamic offset), 5 h, 6 B, 7 y. Dynamic offsets let
 * one cached bind group serve every call: only the offsets into the metadata ring change. The
 * shrink, the fold and the expand (and fused_tile.wgsl) of a call share one bind group, so a call
 * binds it once: each setBindGroup costs microseconds of CPU through Dawn.
 */
export function kernelLayout(device: GPUDevice): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
  const COMPUTE = 0x4 // GPUShaderStage.COMPUTE
  const ro = { type: 'read-only-storage' as const }
  const rw = { type: 'storage' as const }
  const label = 'lora kernels'
  const group = device.createBindGroupLayout({
    label,
    entries: [
      { binding: 0, visibility: COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: PARAMS_BYTES } },
      { binding: 1, visibility: COMPUTE, buffer: ro },
      { binding: 2, visibility: COMPUTE, buffer: ro },
      { binding: 3, visibility: COMPUTE, buffer: ro },
      { binding: 4, visibility: COMPUTE, buffer: { ...ro, hasDynamicOffset: true } },
      { binding: 5, visibility: COMPUTE, buffer: rw },
      { binding: 6, visibility: COMPUTE, buffer: ro },
      { binding: 7, visibility: COMPUTE, buffer: rw },
    ],
  })
  return { group, pipeline: device.createPipelineLayout({ label, bindGroupLayouts: [group] }) }
}

/**
 * The layout of shaders/weigh.wgsl: 0 its params and 1 the weights, both in the ring at dynamic
 * offsets, 2 h. One bind group per (h, ring) serves every weighted call.
 */
export function weighLayout(device: GPUDevice): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
  const COMPUTE = 0x4 // GPUShaderStage.COMPUTE
  const group = device.createBindGroupLayout({
    label: 'lora weigh',
    entries: [
      { binding: 0, visibility: COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: WEIGH_PARAMS_BYTES } },
      { binding: 1, visibility: COMPUTE, buffer: { type: 'read-only-storage', hasDynamicOffset: true } },
      { binding: 2, visibility: COMPUTE, buffer: { type: 'storage' } },
    ],
  })
  return { group, pipeline: device.createPipelineLayout({ label: 'lora weigh', bindGroupLayouts: [group] }) }
}

/**
 * Per-call uniforms and metadata, in a ring: each call takes the next region (its params, one
 * 256-byte block per slot group, then its metadata) and fills it with one writeBuffer, unless a
 * recent region holds the same words (`place`: layers of one shape given one batch). Regions are
 * reused after the ring wraps: writeBuffer is ordered on the queue after every earlier submit, so
 * a region is overwritten only after the calls submitted before read it. Work recorded by
 * `encode` reads its region at the caller's submit: the ring holds 4 MiB of regions (over 8,000
 * decode calls) that may be recorded before that submit.
 */
export class MetaRing {
  buffer!: GPUBuffer
  /** Bumped when the buffer is replaced (cached bind groups refer to the old one). */
  generation = 0
  /** Bytes bound for the metadata at each offset (the largest one call may use). */
  window = 64 * 1024
  private size = 0
  private offset = 0
  /** Times the ring wrapped to its start (a region of an earlier lap may be overwritten). */
  private lap = 0
  /** Host staging for one region (written, then copied by writeBuffer). */
  staging = new Uint32Array(0)
  /** Regions placed lately, by a hash of their words (see `place`). */
  private readonly known = new Map<number, PlacedRegion & { words: Uint32Array }>()

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBinding: number,
  ) {
    this.replace(4 * 1024 * 1024)
  }

  private replace(size: number): void {
    // the old buffer is not destroyed: work recorded into a caller's encoder may still use it
    this.buffer = createBuffer(this.device, size, UNIFORM | STORAGE | COPY_DST, 'lora call metadata', Math.max(this.maxBinding, size))
    this.size = size
    this.offset = 0
    this.generation++
  }

  /**
   * A region of `headBytes` (a multiple of 256: param blocks, block g at + 256 g, and other
   * per-call data) followed by `callMetaBytes` of metadata: returns the byte offset of the region and
   * of its metadata, staged in `staging` from word 0.
   */
  take(headBytes: number, callMetaBytes: number): { params: number; callMeta: number } {
    if (callMetaBytes > this.window) {
      let w = this.window
      while (w < callMetaBytes) w *= 2
      this.window = w
      this.replace(Math.max(this.size, 16 * w))
    }
    if (headBytes + this.window > this.size) this.replace(2 * (headBytes + this.window))
    if (this.offset + headBytes + this.window > this.size) {
      this.offset = 0
      this.lap++
    }
    const at = this.offset
    this.offset = align(at + headBytes + callMetaBytes)
    this.stage(headBytes, callMetaBytes)
    return { params: at, callMeta: at + headBytes }
  }

  /** The staging words of a region of `headBytes` + `callMetaBytes`, for `place` (grown if needed). */
  stage(headBytes: number, callMetaBytes: number): Uint32Array {
    const words = align(headBytes + callMetaBytes) / 4
    if (this.staging.length < words) this.staging = new Uint32Array(Math.max(words, 2 * this.staging.length))
    return this.staging
  }

  /**
   * A region holding the words staged by `stage` (every word of it set): one placed lately with
   * the same words when it is still intact and within the last half of the ring (work recorded
   * with it keeps half the ring, 2 MiB of later regions, before it may be overwritten), else a new
   * one, uploaded with one writeBuffer. Calls of one batch on layers of one shape have the same
   * words: a model step writes one region per shape, not one per call.
   */
  place(headBytes: number, callMetaBytes: number): PlacedRegion {
    const n = align(headBytes + callMetaBytes) / 4
    const w = this.staging
    let hash = 0x811c9dc5 ^ headBytes
    for (let i = 0; i < n; i++) hash = Math.imul(hash ^ w[i], 0x01000193)
    const hit = this.known.get(hash)
    if (hit && hit.words.length === n && hit.callMeta - hit.params === headBytes && this.recent(hit.region) && sameWords(hit.words, w))
      return hit
    const at = this.take(headBytes, callMetaBytes)
    this.upload(at.params, headBytes + callMetaBytes)
    const placed = { params: at.params, callMeta: at.callMeta, region: this.region(at) }
    if (this.known.size >= MAX_KNOWN) this.known.clear()
    this.known.set(hash, { ...placed, words: w.slice(0, n) })
    return placed
  }

  /** Whether a region is intact and was taken within the last half of the ring. */
  private recent(r: RingRegion): boolean {
    return this.intact(r) && (r.lap === this.lap ? this.offset - r.start : this.size - r.start + this.offset) <= this.size / 2
  }

  /** The region just taken at `at`, as {@link intact} checks it. */
  region(at: { params: number }): RingRegion {
    return { buffer: this.buffer, lap: this.lap, start: at.params }
  }

  /**
   * Whether a region still holds what was written to it: no later region has covered it (takes
   * advance through the ring and wrap to its start) and the buffer was not replaced.
   */
  intact(r: RingRegion): boolean {
    return r.buffer === this.buffer && (r.lap === this.lap || (r.lap + 1 === this.lap && this.offset <= r.start))
  }

  /** Upload the staged region taken at `at` (one writeBuffer). */
  upload(at: number, bytes: number): void {
    this.device.queue.writeBuffer(this.buffer, at, this.staging.buffer as ArrayBuffer, 0, align(bytes))
  }

  destroy(): void {
    this.buffer.destroy()
  }
}

/** Regions `MetaRing.place` remembers (each keeps a copy of its words). */
const MAX_KNOWN = 64

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** A region placed in the ring: the byte offsets of its params and metadata, and its identity. */
export interface PlacedRegion {
  params: number
  callMeta: number
  region: RingRegion
}

/** Where one call's params and metadata were written (see MetaRing.intact). */
export interface RingRegion {
  buffer: GPUBuffer
  lap: number
  start: number
}

/**
 * The intermediate h of every call of a backend: one buffer, grown to the largest call. Calls on
 * one queue run in order and each writes its h before reading it, so they can share it.
 */
export class Scratch {
  buffer: GPUBuffer | undefined
  generation = 0
  private readonly old: GPUBuffer[] = []
  constructor(
    private readonly device: GPUDevice,
    private readonly maxBinding: number,
  ) {}

  /** The size of `buffer` (GPUBuffer.size is a getter into Dawn on every read). */
  private size = 0

  get(bytes: number): GPUBuffer {
    if (!this.buffer || this.size < bytes) {
      let size = 4096
      while (size < bytes) size *= 2
      // kept until dispose: work recorded into a caller's encoder may still use it
      if (this.buffer) this.old.push(this.buffer)
      this.buffer = createBuffer(this.device, size, STORAGE, 'lora h', this.maxBinding)
      this.size = size
      this.generation++
    }
    return this.buffer
  }

  destroy(): void {
    this.buffer?.destroy()
    for (const b of this.old) b.destroy()
  }
}

/** What every layer of one backend shares for its calls. */
export interface SharedCallState {
  layout: GPUBindGroupLayout
  /** The layout of weigh.wgsl (see weighLayout). */
  weighLayout: GPUBindGroupLayout
  ring: MetaRing
  h: Scratch
}
