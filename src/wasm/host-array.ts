import { LoraError } from '../errors.js'
import type { HostArray } from '../types.js'
import type { HostMemory } from '../backend.js'

/** A HostArray in the wasm backend's linear memory: the kernels use it in place (HostMemory.addressOf). */
export class WasmHostArray implements HostArray {
  private ptr: number
  private view: Float32Array | null = null

  constructor(
    private readonly memory: HostMemory,
    readonly length: number,
  ) {
    this.ptr = memory.allocHost(length)
  }

  get array(): Float32Array {
    if (this.ptr === 0) throw new LoraError('DISPOSED', 'this host array was released')
    // a view per buffer: the memory's buffer changes when it grows
    const buffer = this.memory.buffer
    if (this.view === null || this.view.buffer !== buffer) this.view = new Float32Array(buffer, this.ptr, this.length)
    return this.view
  }

  release(): void {
    if (this.ptr === 0) return
    this.memory.releaseHost(this.ptr)
    this.ptr = 0
    this.view = null
  }
}

/** A HostArray where the runtime has no wasm backend: an ordinary array (apply copies it as any other). */
export class PlainHostArray implements HostArray {
  private values: Float32Array | null

  constructor(readonly length: number) {
    this.values = new Float32Array(length)
  }

  get array(): Float32Array {
    if (this.values === null) throw new LoraError('DISPOSED', 'this host array was released')
    return this.values
  }

  release(): void {
    this.values = null
  }
}
