/**
 * Locating, compiling and instantiating the kernels module in every runtime:
 * - Node, Bun, Deno: the .wasm files next to the package (build/), read from the file system;
 * - browsers (and anything else with fetch): the same files by URL relative to this module
 *   (a `new URL(path, import.meta.url)`, a pattern bundlers such as Vite follow);
 * - Cloudflare Workers: `WebAssembly.compile` is forbidden there, so the modules must be imported
 *   statically and passed in (the package's `workerd` export, src/workerd.ts, does that).
 * `node:` modules are imported lazily and through a variable, so bundlers for browsers and
 * workers neither follow nor reject them.
 */
import { LoraError } from '../errors.js'
import { importNode } from '../platform.js'

/** The raw exports of the kernels module (see assembly/index.ts). All pointers are byte addresses. */
export interface WasmExports {
  memory: WebAssembly.Memory
  heapBase(): number
  sgmv(
    dtype: number,
    x: number,
    y: number,
    inF: number,
    outF: number,
    rows: number,
    segs: number,
    numSeg: number,
    slots: number,
    widths: number,
    numSlices: number,
    scratch: number,
    decode: number,
    weights: number,
  ): void
  /** The shrink of an embedding layer (assembly/gather.ts). */
  gather(
    dtype: number,
    tokens: number,
    y: number,
    outF: number,
    rows: number,
    segs: number,
    numSeg: number,
    slots: number,
    scratch: number,
    weights: number,
  ): void
  /** Segments at least this long decode 16-bit weights to f32 once (assembly/sgmv.ts). */
  DECODE_MIN: WebAssembly.Global
  shrink(dtype: number, x: number, inF: number, rows: number, n: number, a: number, R: number, h: number): void
  expand(
    dtype: number,
    h: number,
    R: number,
    h0: number,
    rank: number,
    bt: number,
    width: number,
    y: number,
    outF: number,
    col0: number,
    rows: number,
    n: number,
  ): void
  peakFlops(iterations: number, mul: number, add: number): number
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

const WORKERD_HINT =
  'in Cloudflare Workers import the package through its "workerd" export (wrangler does), ' +
  'or import the .wasm files as modules and pass createRuntime({ wasm: { simd, relaxed } })'

/** The package's own build of `variant`, next to this module (build/ beside dist/). */
function defaultUrl(variant: 'simd' | 'relaxed'): URL {
  const file = `multilora-${variant}.wasm`
  try {
    // literal URLs, one per build: bundlers (Vite, webpack) recognise them and emit the files
    return variant === 'simd'
      ? new URL('../../build/multilora-simd.wasm', import.meta.url)
      : new URL('../../build/multilora-relaxed.wasm', import.meta.url)
  } catch (cause) {
    // bundled where modules have no URL (e.g. a worker bundle): nothing to resolve against
    const hint = isWorkerd() ? WORKERD_HINT : 'pass createRuntime({ wasm: { simd } }) with a URL, the bytes or a compiled module'
    throw new LoraError(
      'WASM_LOAD_FAILED',
      `cannot locate build/${file}: this module has no usable URL (import.meta.url = ${String(import.meta.url)}); ${hint}`,
      { cause },
    )
  }
}

/**
 * Load and instantiate the kernels: the relaxed-SIMD build where valid here, else plain SIMD.
 * Without `simd` and `relaxed` both builds are looked up next to the package; when the caller
 * gives only `simd`, no relaxed build is looked for.
 */
export async function loadWasm(options: WasmModuleOptions = {}): Promise<{ exports: WasmExports; variant: WasmVariant }> {
  if (typeof WebAssembly !== 'object') throw new LoraError('WASM_LOAD_FAILED', 'WebAssembly is not available in this runtime')
  const preferRelaxed = options.preferRelaxed ?? true
  let relaxedSource = options.relaxed
  if (relaxedSource === undefined && options.simd === undefined) {
    try {
      relaxedSource = defaultUrl('relaxed')
    } catch {
      // optional: the simd build below reports why nothing can be located
    }
  }
  let module: WebAssembly.Module | null = null
  let variant: WasmVariant = 'simd'
  if (preferRelaxed && relaxedSource instanceof WebAssembly.Module) {
    // a precompiled module was validated by whoever compiled it
    module = relaxedSource
    variant = 'relaxed-simd'
  } else if (preferRelaxed && relaxedSource !== undefined) {
    // The relaxed build is optional: unreadable or invalid here means plain SIMD.
    const bytes = await readSource(relaxedSource).catch(() => null)
    if (bytes && !(bytes instanceof WebAssembly.Module) && WebAssembly.validate(bytes)) {
      module = await compile(bytes, 'relaxed-simd')
      variant = 'relaxed-simd'
    }
  }
  if (!module) {
    const src = await readSource(options.simd ?? defaultUrl('simd'))
    if (src instanceof WebAssembly.Module) module = src
    else {
      if (!WebAssembly.validate(src)) {
        throw new LoraError('WASM_LOAD_FAILED', 'the SIMD kernels do not validate here: this runtime lacks WebAssembly SIMD')
      }
      module = await compile(src, 'simd')
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

async function compile(bytes: Uint8Array<ArrayBuffer>, variant: WasmVariant): Promise<WebAssembly.Module> {
  try {
    return await WebAssembly.compile(bytes)
  } catch (cause) {
    const hint = isWorkerd() ? `: Cloudflare Workers forbid compiling WebAssembly from bytes; ${WORKERD_HINT}` : ''
    throw new LoraError('WASM_LOAD_FAILED', `could not compile the ${variant} kernels: ${String(cause)}${hint}`, { cause })
  }
}

async function readSource(src: WasmSource): Promise<WebAssembly.Module | Uint8Array<ArrayBuffer>> {
  if (src instanceof WebAssembly.Module) return src
  if (src instanceof ArrayBuffer) return new Uint8Array(src)
  if (ArrayBuffer.isView(src)) return new Uint8Array(src.buffer as ArrayBuffer, src.byteOffset, src.byteLength)
  if (typeof src !== 'string' && !(src instanceof URL)) {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `a wasm source must be a WebAssembly.Module, bytes, a URL or a path, got ${src === null ? 'null' : typeof src}`,
    )
  }
  const url = typeof src === 'string' ? toUrl(src) : src
  try {
    if (url.protocol === 'file:' && hasFileSystem()) {
      const fs = (await importNode('node:fs/promises')) as typeof import('node:fs/promises')
      const { fileURLToPath } = (await importNode('node:url')) as typeof import('node:url')
      return new Uint8Array(await fs.readFile(fileURLToPath(url)))
    }
    if (url.protocol === 'file:' && isWorkerd()) {
      throw new Error(`Cloudflare Workers have no file system; ${WORKERD_HINT}`)
    }
    const res = await fetch(url)
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`)
    return new Uint8Array(await res.arrayBuffer())
  } catch (cause) {
    throw new LoraError('WASM_LOAD_FAILED', `could not read the kernels from ${url.href}: ${String(cause)}`, { cause })
  }
}

function toUrl(s: string): URL {
  if (/^[a-z][a-z0-9+.-]+:/i.test(s)) return new URL(s) // a scheme of two or more letters: 'C:\\x' stays a path
  if (!hasFileSystem()) {
    // a relative path in a browser: relative to the page
    const base = (globalThis as { location?: { href: string } }).location?.href
    if (base) return new URL(s, base)
    throw new LoraError(
      'WASM_LOAD_FAILED',
      `cannot resolve the path ${s} in a runtime without a file system: pass a URL or a WebAssembly.Module`,
    )
  }
  const cwd = (globalThis as { process?: { cwd(): string } }).process?.cwd() ?? '/'
  return new URL(s.startsWith('/') ? `file://${s}` : `file://${cwd}/${s}`)
}

/** Node, Bun and Deno read file: URLs through node:fs. */
function hasFileSystem(): boolean {
  if (isWorkerd()) return false // nodejs_compat gives workerd a `process` but no real file system
  const p = (globalThis as { process?: { versions?: Record<string, string> } }).process
  return !!p?.versions?.node || 'Deno' in globalThis || 'Bun' in globalThis
}

function isWorkerd(): boolean {
  return (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent === 'Cloudflare-Workers'
}
