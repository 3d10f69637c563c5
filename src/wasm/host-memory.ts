import type { HostMemory } from '../backend.js'
import type { WasmMemory } from './memory.js'

/** The wasm backend's host arrays and per-call work area, in its linear memory beside the weights. */
export class WasmHostMemory implements HostMemory {
  private scratchPtr = 0
  private scratchSize = 0
  /** Host arrays (runtime.hostArray): byte address -> bytes. */
  private readonly hosts = new Map<number, number>()

  constructor(private readonly memory: WasmMemory) {}

  get buffer(): ArrayBufferLike {
    return this.memory.f32.buffer
  }

  get scratchBytes(): number {
    return this.scratchSize
  }

  /** A per-call work area of at least `bytes`; valid until the next call (calls are synchronous). */
  scratch(bytes: number): number {
    if (bytes > this.scratchSize) {
      this.memory.release(this.scratchPtr)
      this.scratchPtr = 0
      this.scratchSize = 0
      this.scratchPtr = this.memory.alloc(bytes)
      this.scratchSize = bytes
    }
    return this.scratchPtr
  }

  allocHost(floats: number): number {
    const ptr = this.memory.alloc(floats * 4)
    this.memory.f32.fill(0, ptr >> 2, (ptr >> 2) + floats)
    this.hosts.set(ptr, floats * 4)
    return ptr
  }

  releaseHost(ptr: number): void {
    if (this.hosts.delete(ptr)) this.memory.release(ptr)
  }

  addressOf(v: Float32Array): number {
    if (!this.memory.owns(v.buffer)) return -1
    const p = v.byteOffset
    const end = p + v.byteLength
    for (const [ptr, bytes] of this.hosts) if (p >= ptr && end <= ptr + bytes) return p
    return -2
  }

  /** Free the work area (host arrays are freed by their owners). */
  dispose(): void {
    this.memory.release(this.scratchPtr)
    this.scratchPtr = 0
    this.scratchSize = 0
  }
}
