import { LoraError } from '../errors.js'

/** The raw exports of the kernels module (see assembly/index.ts). All pointers are byte addresses. */
export interface WasmExports {
  memory: WebAssembly.Memory
  heapBase(): number
  sgmv(dtype: number, x: number, y: number, inF: number, outF: number, rows: number, segs: number, numSeg: number,
    slots: number, widths: number, numSlices: number, scratch: number): void
  shrink(dtype: number, x: number, inF: number, rows: number, n: number, a: number, R: number, h: number): void
  expand(dtype: number, h: number, R: number, h0: number, rank: number, bt: number, width: number,
    y: number, outF: number, col0: number, rows: number, n: number): void
  peakFlops(iterations: number): number
  readBytes(ptr: number, bytes: number, reps: number): number
}

/** Where the kernels module comes from: compiled module, bytes, or a URL/path to the .wasm file. */
export type WasmSource = WebAssembly.Module | ArrayBuffer | ArrayBufferView | URL | string

export interface WasmModuleOptions {
  /** Source of the relaxed-SIMD build; used where WebAssembly.validate accepts it. */
  relaxed?: WasmSource
  /** Source of the plain-SIMD build. */
  simd?: WasmSource
  /** Use the relaxed-SIMD build when this runtime supports it (default true). */
  preferRelaxed?: boolean
}

export type WasmVariant = 'relaxed-simd' | 'simd'

const DEFAULT_URLS = {
  relaxed: () => new URL('../../build/multilora-relaxed.wasm', import.meta.url),
  simd: () => new URL('../../build/multilora-simd.wasm', import.meta.url),
}

/** Load and instantiate the kernels: the relaxed-SIMD build where valid here, else plain SIMD. */
export async function loadWasm(options: WasmModuleOptions = {}): Promise<{ exports: WasmExports; variant: WasmVariant }> {
  if (typeof WebAssembly !== 'object') throw new LoraError('WASM_LOAD_FAILED', 'WebAssembly is not available in this runtime')
  const preferRelaxed = options.preferRelaxed ?? true
  let module: WebAssembly.Module | null = null
  let variant: WasmVariant = 'simd'
  if (preferRelaxed && options.relaxed !== undefined && options.relaxed instanceof WebAssembly.Module) {
    // a precompiled module was validated by whoever compiled it
    module = options.relaxed
    variant = 'relaxed-simd'
  } else if (preferRelaxed) {
    const bytes = await readSource(options.relaxed ?? DEFAULT_URLS.relaxed()).catch(() => null)
    if (bytes && !(bytes instanceof WebAssembly.Module) && WebAssembly.validate(bytes)) {
      module = await WebAssembly.compile(bytes)
      variant = 'relaxed-simd'
    }
  }
  if (!module) {
    const src = await readSource(options.simd ?? DEFAULT_URLS.simd())
    if (src instanceof WebAssembly.Module) module = src
    else {
      if (!WebAssembly.validate(src)) {
        throw new LoraError('WASM_LOAD_FAILED', 'the SIMD kernels do not validate here: this runtime lacks WebAssembly SIMD')
      }
      module = await WebAssembly.compile(src)
    }
    variant = 'simd'
  }
  try {
    const instance = await WebAssembly.instantiate(module, {})
    return { exports: instance.exports as unknown as WasmExports, variant }
  } catch (cause) {
    throw new LoraError('WASM_LOAD_FAILED', `could not instantiate the ${variant} kernels: ${String(cause)}`, { cause })
  }
}

async function readSource(src: WasmSource): Promise<WebAssembly.Module | Uint8Array<ArrayBuffer>> {
  if (src instanceof WebAssembly.Module) return src
  if (src instanceof ArrayBuffer) return new Uint8Array(src)
  if (ArrayBuffer.isView(src)) return new Uint8Array(src.buffer as ArrayBuffer, src.byteOffset, src.byteLength)
  const url = typeof src === 'string' ? toUrl(src) : src
  try {
    if (url.protocol === 'file:' && isNodeLike()) {
      const fs = await import('node:fs/promises')
      const { fileURLToPath } = await import('node:url')
      return new Uint8Array(await fs.readFile(fileURLToPath(url)))
    }
    const res = await fetch(url)
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
    return new Uint8Array(await res.arrayBuffer())
  } catch (cause) {
    throw new LoraError('WASM_LOAD_FAILED', `could not read the kernels from ${url.href}: ${String(cause)}`, { cause })
  }
}

function toUrl(s: string): URL {
  try {
    return new URL(s)
  } catch {
    // a plain path: resolve against the working directory where there is one
    const cwd = isNodeLike() ? (globalThis as { process?: { cwd(): string } }).process!.cwd() : ''
    return new URL(s.startsWith('/') ? `file://${s}` : `file://${cwd}/${s}`)
  }
}

function isNodeLike(): boolean {
  const p = (globalThis as { process?: { versions?: Record<string, string> } }).process
  return !!p?.versions?.node || 'Deno' in globalThis || 'Bun' in globalThis
}
