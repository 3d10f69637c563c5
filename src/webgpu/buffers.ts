import { LoraError } from '../errors.js'

const STORAGE_IN = 0x80 | 0x8 // STORAGE | COPY_DST (GPUBufferUsage values, constant across implementations)
export const USAGE = {
  /** Read by kernels, filled by writeBuffer. */
  storage: STORAGE_IN,
  /** Read and written by kernels, filled by writeBuffer, copied out for readback. */
  storageRw: STORAGE_IN | 0x4, // | COPY_SRC
  uniform: 0x40 | 0x8, // UNIFORM | COPY_DST
  readback: 0x1 | 0x8, // MAP_READ | COPY_DST
  /** Host uploads: written while mapped, then copied on the queue. */
  upload: 0x2 | 0x4, // MAP_WRITE | COPY_SRC
} as const

/** Round up to a power of two (at least 256 bytes), so pooled buffers get reused across sizes. */
export function bucket(bytes: number): number {
  let size = 256
  while (size < bytes) size *= 2
  return size
}

/**
 * Pool of per-call buffers (inputs, intermediates, uniforms, readback), keyed by usage and
 * size bucket. Buffers go back to the pool right after their submit: later writeBuffer calls are
 * ordered after it on the queue, so reuse never overwrites data the GPU still needs.
 */
export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>()
  private readonly all = new Set<GPUBuffer>()
  constructor(
    private readonly device: GPUDevice,
    private readonly maxBytes: number,
  ) {}

  acquire(bytes: number, usage: number, label: string): GPUBuffer {
    const size = bucket(bytes)
    const list = this.free.get(`${usage}:${size}`)
    const reused = list?.pop()
    if (reused) return reused
    return createBuffer(this.device, size, usage, label, this.maxBytes)
  }

  release(buffer: GPUBuffer): void {
    const key = `${buffer.usage}:${buffer.size}`
    let list = this.free.get(key)
    if (!list) this.free.set(key, (list = []))
    list.push(buffer)
    this.all.add(buffer)
  }

  destroy(): void {
    for (const b of this.all) b.destroy()
    this.all.clear()
    this.free.clear()
  }
}

/** createBuffer with a size check first (a too-large buffer is OUT_OF_MEMORY, not a GPU validation error). */
export function createBuffer(device: GPUDevice, bytes: number, usage: number, label: string, maxBytes: number): GPUBuffer {
  if (bytes > maxBytes) {
    throw new LoraError('OUT_OF_MEMORY', `${label}: ${bytes} bytes exceed the device's largest storage binding (${maxBytes} bytes)`)
  }
  return device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage })
}

/**
 * Upload buffers kept mapped for writing, for the host arrays of calls on a discrete adapter: the
 * caller's values are copied once into mapped memory, then copyBufferToBuffer moves them on the
 * queue. On an H200 (Dawn) that ran at 8.6-11.8 GB/s for 4-64 MiB, where writeBuffer paid for a
 * staging allocation per write past its 4 MiB ring: 2.4-3.2 GB/s. A buffer goes back to the pool
 * once mapped again, which resolves when the submit that read it is done.
 */
export class StagingPool {
  private readonly free = new Map<number, GPUBuffer[]>()
  private readonly all = new Set<GPUBuffer>()
  private destroyed = false
  constructor(
    private readonly device: GPUDevice,
    private readonly maxBytes: number,
    /** Tracks Dawn's promises (LossWatch.track). */
    private readonly track: <T>(p: Promise<T>) => Promise<T> = (p) => p,
  ) {}

  /** A mapped buffer of at least `bytes` (getMappedRange works on it now). */
  acquire(bytes: number): GPUBuffer {
    const size = bucket(bytes)
    const reused = this.free.get(size)?.pop()
    if (reused) return reused
    if (size > this.maxBytes) {
      throw new LoraError('OUT_OF_MEMORY', `upload: ${bytes} bytes exceed the device's largest buffer (${this.maxBytes} bytes)`)
    }
    const made = this.device.createBuffer({ label: 'lora upload', size, usage: USAGE.upload, mappedAtCreation: true })
    this.all.add(made)
    return made
  }

  /** Give back a buffer after the submit that copies from it (unmapped): it is reused once mapped again. */
  release(buffer: GPUBuffer): void {
    if (buffer.mapState !== 'unmapped') buffer.unmap()
    this.track(buffer.mapAsync(0x2 /* GPUMapMode.WRITE */)).then(
      () => {
        if (this.destroyed) return
        let list = this.free.get(buffer.size)
        if (!list) this.free.set(buffer.size, (list = []))
        list.push(buffer)
      },
      () => {
        // the device was lost or the pool destroyed: the buffer is gone
        this.all.delete(buffer)
      },
    )
  }

  destroy(): void {
    this.destroyed = true
    for (const b of this.all) b.destroy()
    this.all.clear()
    this.free.clear()
  }
}

/**
 * Largest single writeBuffer of a host upload. Dawn stages a write in its ring of 4 MiB upload
 * buffers when it fits, else in a buffer allocated for that write alone: on lavapipe (a loaded
 * machine) 64 MiB went at 0.09 GB/s in one write and 1.8 GB/s in 4 MiB writes. (On an H200 both
 * ran at 2.4 GB/s: a discrete adapter uploads through mapped staging buffers, see StagingPool.)
 */
export const WRITE_CHUNK = 4 * 1024 * 1024

/** Write the first `n` values of `data` to `dst` at byte 0, in writes of at most WRITE_CHUNK bytes (queue order kept). */
export function writeChunked(queue: GPUQueue, dst: GPUBuffer, data: Float32Array | Int32Array, n: number): void {
  const bytes = n * 4
  const src = data.buffer as ArrayBuffer
  for (let at = 0; at < bytes; at += WRITE_CHUNK) queue.writeBuffer(dst, at, src, data.byteOffset + at, Math.min(WRITE_CHUNK, bytes - at))
}
