import { LoraError } from '../errors.js'

const PAGE = 65536
const ALIGN = 16
/** wasm32 linear memory ends at 4 GiB; V8 caps it at 65536 pages. */
const MAX_PAGES = 65536

/**
 * Host-side allocator over the module's one linear memory: first-fit over a sorted free list,
 * neighbours coalesced on free, 16-byte aligned blocks. Growing the memory detaches old views,
 * so typed-array views are always taken through the getters below, never kept.
 */
export class WasmMemory {
  private readonly memory: WebAssembly.Memory
  /** Free blocks [start, size], sorted by start. */
  private free: Array<[number, number]> = []
  private readonly sizes = new Map<number, number>()
  private buffer: ArrayBuffer | null = null
  private f32View = new Float32Array(0)
  private i32View = new Int32Array(0)
  private u16View = new Uint16Array(0)
  private u8View = new Uint8Array(0)
  /**
   * Every buffer this memory has had (as seen by refresh): a shared memory's old buffers still
   * alias its first bytes after a grow, so views taken from them are views of this memory.
   */
  private readonly buffers = new WeakSet<ArrayBufferLike>()

  constructor(memory: WebAssembly.Memory, heapBase: number) {
    this.memory = memory
    const start = align(heapBase)
    const end = memory.buffer.byteLength
    if (end > start) this.free.push([start, end - start])
  }

  /** Bytes currently allocated. */
  get allocatedBytes(): number {
    let n = 0
    for (const s of this.sizes.values()) n += s
    return n
  }

  /** Allocate `bytes` (rounded up to 16); returns the byte address. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, align(bytes))
    for (let i = 0; i < this.free.length; i++) {
      const [start, avail] = this.free[i]
      if (avail < size) continue
      if (avail === size) this.free.splice(i, 1)
      else this.free[i] = [start + size, avail - size]
      this.sizes.set(start, size)
      return start
    }
    this.grow(size)
    return this.alloc(bytes)
  }

  /** Free a block returned by alloc. Freeing 0 does nothing. */
  release(ptr: number): void {
    if (ptr === 0) return
    const size = this.sizes.get(ptr)
    if (size === undefined) throw new Error(`wasm memory: double free or foreign pointer ${ptr}`)
    this.sizes.delete(ptr)
    this.insertFree(ptr, size)
  }

  private insertFree(start: number, size: number): void {
    let i = 0
    while (i < this.free.length && this.free[i][0] < start) i++
    this.free.splice(i, 0, [start, size])
    // coalesce with the next, then with the previous block
    if (i + 1 < this.free.length && start + size === this.free[i + 1][0]) {
      this.free[i][1] += this.free[i + 1][1]
      this.free.splice(i + 1, 1)
    }
    if (i > 0 && this.free[i - 1][0] + this.free[i - 1][1] === start) {
      this.free[i - 1][1] += this.free[i][1]
      this.free.splice(i, 1)
    }
  }

  private grow(size: number): void {
    const oldEnd = this.memory.buffer.byteLength
    const last = this.free[this.free.length - 1]
    const tailFree = last && last[0] + last[1] === oldEnd ? last[1] : 0
    const pages = Math.ceil((size - tailFree) / PAGE)
    if (oldEnd / PAGE + pages > MAX_PAGES) {
      throw new LoraError('OUT_OF_MEMORY', `wasm linear memory cannot grow by ${pages} pages (${oldEnd / PAGE} in use, max ${MAX_PAGES})`)
    }
    try {
      this.memory.grow(pages)
    } catch (cause) {
      throw new LoraError('OUT_OF_MEMORY', `wasm linear memory could not grow by ${pages} pages`, { cause })
    }
    this.insertFree(oldEnd, pages * PAGE)
  }

  private refresh(): void {
    const buf = this.memory.buffer
    if (buf === this.buffer) return
    this.buffer = buf as ArrayBuffer
    this.buffers.add(buf)
    this.f32View = new Float32Array(buf)
    this.i32View = new Int32Array(buf)
    this.u16View = new Uint16Array(buf)
    this.u8View = new Uint8Array(buf)
  }

  /** Whether `buffer` is (or was, for a shared memory) this memory's buffer, and not detached. */
  owns(buffer: ArrayBufferLike): boolean {
    return buffer.byteLength > 0 && this.buffers.has(buffer)
  }

  get f32(): Float32Array {
    this.refresh()
    return this.f32View
  }
  get i32(): Int32Array {
    this.refresh()
    return this.i32View
  }
  get u16(): Uint16Array {
    this.refresh()
    return this.u16View
  }
  get u8(): Uint8Array {
    this.refresh()
    return this.u8View
  }
}

function align(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN
}
