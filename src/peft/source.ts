/**
 * Where an adapter's files come from: a directory (Node, Deno, Bun), a URL (fetch; file: URLs
 * through the file system), or bytes already in memory. `node:fs` is imported lazily, only on
 * the directory path, so this module also loads in browsers and workers.
 */
import { LoraError } from '../errors.js'
import { importNode } from '../platform.js'
import { readSafetensors } from './safetensors.js'

/** Adapter files already in memory. */
export interface InMemoryAdapter {
  /** adapter_config.json as an object or JSON text. */
  config: unknown
  /** adapter_model.safetensors, or all shards of a sharded checkpoint. */
  weights: Uint8Array | readonly Uint8Array[]
}

/** A directory path, an http(s) or file URL (string or URL), or the files in memory. */
export type AdapterSource = string | URL | InMemoryAdapter

/** The raw files of an adapter, ready for `parseAdapter`. */
export interface AdapterFiles {
  config: unknown
  weights: Uint8Array[]
  /** Names of the weight files, for error messages. */
  fileNames: string[]
  kind: 'memory' | 'path' | 'url'
  /** The directory or URL, for messages ('memory' for in-memory sources). */
  origin: string
}

const CONFIG = 'adapter_config.json'
const WEIGHTS = 'adapter_model.safetensors'
const INDEX = 'adapter_model.safetensors.index.json'

type ReadFn = (name: string) => Promise<Uint8Array | null>

/** 'memory', 'url' or 'path', and a printable origin, without reading anything. */
export function describeSource(source: AdapterSource): { kind: AdapterFiles['kind']; origin: string } {
  if (source instanceof URL) return { kind: 'url', origin: source.href }
  if (typeof source === 'string') {
    // A scheme of two or more letters: 'C:\\x' stays a (Windows) path.
    return /^[a-z][a-z0-9+.-]+:/i.test(source) ? { kind: 'url', origin: source } : { kind: 'path', origin: source }
  }
  if (source !== null && typeof source === 'object' && 'config' in source && 'weights' in source)
    return { kind: 'memory', origin: 'memory' }
  throw new LoraError(
    'INVALID_ARGUMENT',
    `adapter source must be a directory path, a URL or { config, weights }, got ${source === null ? 'null' : typeof source}`,
  )
}

/**
 * Read an adapter's config and weight file(s). A sharded checkpoint is read through
 * adapter_model.safetensors.index.json; its weight_map must agree with the shards.
 * @throws LoraError 'NOT_FOUND' (missing directory, file or URL), 'INVALID_FILE' (bad index),
 *   'UNSUPPORTED_FEATURE' (only a pickle adapter_model.bin), 'INVALID_ARGUMENT' (bad source)
 */
export async function readAdapterSource(source: AdapterSource): Promise<AdapterFiles> {
  const { kind, origin } = describeSource(source)
  if (kind === 'memory') {
    const { config, weights } = source as InMemoryAdapter
    const list = weights instanceof Uint8Array ? [weights] : Array.isArray(weights) ? [...weights] : null
    if (!list || list.length === 0 || !list.every((w) => w instanceof Uint8Array)) {
      throw new LoraError('INVALID_ARGUMENT', 'in-memory adapter: weights must be a Uint8Array or a non-empty array of them')
    }
    return { config, weights: list, fileNames: list.map((_, i) => (list.length > 1 ? `shard ${i}` : WEIGHTS)), kind, origin }
  }
  const read = kind === 'path' ? await fsReader(source as string) : await urlReader(source as string | URL, origin)
  const configBytes = await read(CONFIG)
  if (!configBytes) throw new LoraError('NOT_FOUND', `${CONFIG} not found in ${origin}`)
  const config = new TextDecoder().decode(configBytes)
  const single = await read(WEIGHTS)
  if (single) return { config, weights: [single], fileNames: [WEIGHTS], kind, origin }
  const index = await read(INDEX)
  if (!index) {
    if (await read('adapter_model.bin')) {
      throw new LoraError(
        'UNSUPPORTED_FEATURE',
        `${origin}: only adapter_model.bin (PyTorch pickle) found; save with safe_serialization=True`,
      )
    }
    throw new LoraError('NOT_FOUND', `neither ${WEIGHTS} nor ${INDEX} found in ${origin}`)
  }
  const shards = shardNames(index, `${origin}/${INDEX}`)
  const weights: Uint8Array[] = []
  for (const [file, keys] of shards) {
    const bytes = await read(file)
    if (!bytes) throw new LoraError('NOT_FOUND', `shard ${file} listed in ${INDEX} not found in ${origin}`)
    const names = new Set(readSafetensors(bytes, `${origin}/${file}`).tensors.keys())
    const missing = keys.find((k) => !names.has(k))
    if (missing !== undefined || names.size !== keys.length) {
      throw new LoraError(
        'INVALID_FILE',
        `${origin}/${INDEX}: weight_map disagrees with ${file}${missing !== undefined ? ` (no tensor "${missing}")` : ` (it holds ${names.size} tensors, the index lists ${keys.length})`}`,
      )
    }
    weights.push(bytes)
  }
  return { config, weights, fileNames: [...shards.keys()], kind, origin }
}

/** Shard file -> the tensor names the index assigns to it, in first-seen order. */
function shardNames(bytes: Uint8Array, where: string): Map<string, string[]> {
  let index: unknown
  try {
    index = JSON.parse(new TextDecoder().decode(bytes))
  } catch (e) {
    throw new LoraError('INVALID_FILE', `${where}: not valid JSON (${(e as Error).message})`)
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map
  if (map === null || typeof map !== 'object' || Array.isArray(map))
    throw new LoraError('INVALID_FILE', `${where}: weight_map must be an object`)
  const shards = new Map<string, string[]>()
  for (const [key, file] of Object.entries(map as Record<string, unknown>)) {
    // Shard names are plain file names: nothing may point outside the adapter's directory.
    if (typeof file !== 'string' || !/^[^/\\]+$/.test(file) || file === '.' || file === '..') {
      throw new LoraError(
        'INVALID_FILE',
        `${where}: weight_map["${key}"] must be a file name in the same directory, got ${JSON.stringify(file)}`,
      )
    }
    const keys = shards.get(file) ?? []
    keys.push(key)
    shards.set(file, keys)
  }
  if (shards.size === 0) throw new LoraError('INVALID_FILE', `${where}: weight_map is empty`)
  return shards
}

async function fsModule(what: string): Promise<typeof import('node:fs/promises')> {
  try {
    return (await importNode('node:fs/promises')) as typeof import('node:fs/promises')
  } catch (e) {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `${what}: reading from the file system needs Node, Deno or Bun; pass a URL or { config, weights } instead`,
      { cause: e },
    )
  }
}

async function fsReader(dir: string): Promise<ReadFn> {
  const fs = await fsModule(dir)
  const stat = await fs.stat(dir).catch(() => null)
  if (!stat?.isDirectory()) throw new LoraError('NOT_FOUND', `adapter directory ${dir} does not exist or is not a directory`)
  const base = dir.endsWith('/') || dir.endsWith('\\') ? dir : `${dir}/`
  return async (name) => {
    try {
      const buf = await fs.readFile(base + name)
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return null
      throw new LoraError('NOT_FOUND', `cannot read ${base + name}: ${(e as Error).message}`, { cause: e })
    }
  }
}

async function urlReader(source: string | URL, origin: string): Promise<ReadFn> {
  let url: URL
  try {
    url = new URL(source)
  } catch (e) {
    throw new LoraError('INVALID_ARGUMENT', `adapter URL ${origin} is not a valid URL`, { cause: e })
  }
  if (url.protocol === 'file:') {
    const { fileURLToPath } = ((await importNode('node:url').catch(() => null)) ?? { fileURLToPath: null }) as {
      fileURLToPath: ((u: URL) => string) | null
    }
    if (!fileURLToPath) throw new LoraError('INVALID_ARGUMENT', `${origin}: file: URLs need Node, Deno or Bun`)
    return fsReader(fileURLToPath(url))
  }
  if (typeof fetch !== 'function') throw new LoraError('INVALID_ARGUMENT', `${origin}: no fetch in this runtime`)
  // Files are resolved relative to the URL: schemes that cannot be a base (data:, blob:, mailto:) are refused.
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `adapter URL ${origin}: only http(s) and file URLs can hold an adapter directory, got ${url.protocol}`,
    )
  }
  const base = new URL(url.href.endsWith('/') ? url.href : `${url.href}/`)
  return async (name) => {
    const at = new URL(name, base)
    let res: Response
    try {
      res = await fetch(at)
    } catch (e) {
      throw new LoraError('NOT_FOUND', `cannot fetch ${at.href}: ${(e as Error).message}`, { cause: e })
    }
    if (res.status === 404 || res.status === 410) return null
    if (!res.ok) throw new LoraError('NOT_FOUND', `fetching ${at.href} failed: HTTP ${res.status}`)
    return new Uint8Array(await res.arrayBuffer())
  }
}
