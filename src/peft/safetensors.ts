/**
 * A small, strict reader and writer of the safetensors format
 * (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes of
 * JSON header { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {str: str} },
 * then the data section. Offsets are relative to the data section.
 *
 * Every malformed file gives LoraError 'INVALID_FILE' naming the file and the problem; nothing
 * here allocates more than the file's own size (sizes are checked against the data section
 * before any copy).
 */
import { LoraError } from '../errors.js'

/** The tensor dtypes this library reads (LoRA adapters are saved in one of these). */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16'

/** One tensor: F32 data as Float32Array, F16/BF16 as raw 16-bit patterns. */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype
  shape: number[]
  data: Float32Array | Uint16Array
}

/** A parsed file. Maps, not plain objects, so no tensor name can touch a prototype. */
export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>
  metadata: Map<string, string>
}

/** The header may not exceed this: the Rust reference implementation uses the same cap. */
export const MAX_HEADER_BYTES = 100_000_000

const DTYPE_SIZE: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 }
/** Valid safetensors dtypes that this library does not read (UNSUPPORTED_DTYPE, not INVALID_FILE). */
const OTHER_DTYPES = new Set([
  'BOOL',
  'U8',
  'I8',
  'I16',
  'U16',
  'I32',
  'U32',
  'I64',
  'U64',
  'F64',
  'C64',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F6_E2M3',
  'F6_E3M2',
  'F4',
])
/** Keys that could reach Object.prototype if anyone ever copied the header into a plain object. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

/** Typed-array views are host-endian; the format is little-endian. Big-endian hosts always copy. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

function invalid(file: string, what: string): LoraError {
  return new LoraError('INVALID_FILE', `${file}: ${what}`)
}

/**
 * Parse a safetensors file. Tensors are zero-copy views into `bytes` when their absolute offset
 * is aligned (4 bytes for F32, 2 for F16/BF16), copies otherwise.
 * @param bytes the whole file
 * @param fileName used in error messages
 * @throws LoraError 'INVALID_FILE' for any malformed file, 'UNSUPPORTED_DTYPE' for a valid dtype
 *   other than F32/F16/BF16.
 */
export function readSafetensors(bytes: Uint8Array, fileName = 'safetensors file'): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) {
    throw new LoraError('INVALID_ARGUMENT', `${fileName}: expected a Uint8Array, got ${typeof bytes}`)
  }
  try {
    return parse(bytes, fileName)
  } catch (e) {
    // Guarantee: a malformed file never escapes as TypeError/RangeError.
    if (e instanceof LoraError) throw e
    throw new LoraError('INVALID_FILE', `${fileName}: ${(e as Error)?.message ?? String(e)}`, { cause: e })
  }
}

function parse(bytes: Uint8Array, file: string): SafetensorsFile {
  if (bytes.length < 8) throw invalid(file, `${bytes.length} bytes is too short for the 8-byte header length`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const lo = view.getUint32(0, true)
  const hi = view.getUint32(4, true)
  const headerLen = hi * 2 ** 32 + lo
  if (headerLen > MAX_HEADER_BYTES) throw invalid(file, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`)
  if (headerLen > bytes.length - 8) {
    throw invalid(file, `header length ${headerLen} runs past the end of the file (${bytes.length} bytes)`)
  }
  if (headerLen < 2) throw invalid(file, `header length ${headerLen} cannot hold a JSON object`)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen))
  } catch {
    throw invalid(file, 'header is not valid UTF-8')
  }
  let header: unknown
  try {
    header = JSON.parse(text, (key, value) => {
      if (FORBIDDEN_KEYS.has(key)) throw new Error(`forbidden key "${key}"`)
      return value
    })
  } catch (e) {
    throw invalid(file, `header is not valid JSON (${(e as Error).message})`)
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw invalid(file, `header must be a JSON object, got ${Array.isArray(header) ? 'an array' : typeof header}`)
  }

  const dataStart = 8 + headerLen
  const dataLen = bytes.length - dataStart
  const metadata = new Map<string, string>()
  const tensors = new Map<string, SafetensorsTensor>()
  const extents: [number, number, string][] = []
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      readMetadata(info, metadata, file)
      continue
    }
    const t = readTensorInfo(name, info, dataLen, file)
    if (t.end > t.begin) extents.push([t.begin, t.end, name])
    tensors.set(name, { dtype: t.dtype, shape: t.shape, data: tensorData(bytes, dataStart + t.begin, t) })
  }
  extents.sort((a, b) => a[0] - b[0])
  for (let i = 1; i < extents.length; i++) {
    const [b0, e0, n0] = extents[i - 1]
    const [b1, e1, n1] = extents[i]
    if (b1 < e0) throw invalid(file, `tensors "${n0}" [${b0}, ${e0}) and "${n1}" [${b1}, ${e1}) overlap`)
  }
  return { tensors, metadata }
}

function readMetadata(info: unknown, out: Map<string, string>, file: string): void {
  if (info === null || typeof info !== 'object' || Array.isArray(info)) {
    throw invalid(file, '__metadata__ must be an object of string values')
  }
  for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
    if (typeof v !== 'string') throw invalid(file, `__metadata__["${k}"] must be a string, got ${typeof v}`)
    out.set(k, v)
  }
}

interface TensorInfo {
  dtype: SafetensorsDtype
  shape: number[]
  begin: number
  end: number
  count: number
}

function readTensorInfo(name: string, info: unknown, dataLen: number, file: string): TensorInfo {
  const where = `tensor "${name}"`
  if (info === null || typeof info !== 'object' || Array.isArray(info)) throw invalid(file, `${where}: entry must be an object`)
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>
  if (typeof dtype !== 'string') throw invalid(file, `${where}: dtype must be a string`)
  if (!(dtype in DTYPE_SIZE)) {
    if (OTHER_DTYPES.has(dtype)) {
      throw new LoraError('UNSUPPORTED_DTYPE', `${file}: ${where} has dtype ${dtype}; only F32, F16 and BF16 are supported`)
    }
    throw invalid(file, `${where}: unknown dtype ${JSON.stringify(dtype.slice(0, 20))}`)
  }
  const size = DTYPE_SIZE[dtype as SafetensorsDtype]
  if (!Array.isArray(shape) || shape.length > 8) throw invalid(file, `${where}: shape must be an array of at most 8 dimensions`)
  // Element count, checked against the data section as it grows so it can never overflow.
  let count = 1
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw invalid(file, `${where}: shape [${shape.join(', ')}] has a dimension that is not a non-negative integer`)
    count = count * d > dataLen ? Infinity : count * d
  }
  if (shape.includes(0)) count = 0
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw invalid(file, `${where}: data_offsets must be two non-negative integers [begin, end]`)
  }
  const [begin, end] = offsets as number[]
  if (begin > end || end > dataLen) {
    throw invalid(file, `${where}: data_offsets [${begin}, ${end}] lie outside the data section of ${dataLen} bytes`)
  }
  if (count * size !== end - begin) {
    throw invalid(
      file,
      `${where}: shape [${shape.join(', ')}] x ${size} bytes (${dtype}) does not match the ${end - begin} bytes of data_offsets [${begin}, ${end}]`,
    )
  }
  return { dtype: dtype as SafetensorsDtype, shape: shape.slice(), begin, end, count }
}

function tensorData(bytes: Uint8Array, absolute: number, t: TensorInfo): Float32Array | Uint16Array {
  const size = DTYPE_SIZE[t.dtype]
  const at = bytes.byteOffset + absolute
  if (LITTLE_ENDIAN && at % size === 0) {
    return t.dtype === 'F32' ? new Float32Array(bytes.buffer, at, t.count) : new Uint16Array(bytes.buffer, at, t.count)
  }
  // Unaligned (or big-endian host): copy through a DataView.
  const dv = new DataView(bytes.buffer, at, t.count * size)
  if (t.dtype === 'F32') {
    const out = new Float32Array(t.count)
    for (let i = 0; i < t.count; i++) out[i] = dv.getFloat32(i * 4, true)
    return out
  }
  const out = new Uint16Array(t.count)
  for (let i = 0; i < t.count; i++) out[i] = dv.getUint16(i * 2, true)
  return out
}

/** A tensor given to {@link writeSafetensors}. */
export interface TensorToWrite {
  dtype: SafetensorsDtype
  shape: readonly number[]
  /** F32: Float32Array; F16/BF16: the 16-bit patterns (see encodeHalf in dtype.ts). */
  data: Float32Array | Uint16Array
}

/**
 * Serialise tensors (in iteration order) into a safetensors file. The header is padded with
 * spaces to a multiple of 8 bytes, as the reference writer does, so every tensor is aligned.
 * @throws LoraError 'INVALID_ARGUMENT' when a tensor's data does not match its dtype and shape.
 */
export function writeSafetensors(
  tensors: ReadonlyMap<string, TensorToWrite> | Readonly<Record<string, TensorToWrite>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  if (typeof tensors !== 'object' || tensors === null)
    throw new LoraError(
      'INVALID_ARGUMENT',
      `tensors must be a Map or an object of tensors, got ${tensors === null ? 'null' : typeof tensors}`,
    )
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null))
    throw new LoraError('INVALID_ARGUMENT', `metadata must be an object of strings, got ${metadata === null ? 'null' : typeof metadata}`)
  const entries: [string, TensorToWrite][] =
    tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, TensorToWrite>)
  for (const [name, t] of entries) {
    if (typeof t !== 'object' || t === null || !Array.isArray(t.shape)) {
      throw new LoraError(
        'INVALID_ARGUMENT',
        `tensor "${name}" must be { dtype, shape: number[], data }, got ${t === null ? 'null' : typeof t}`,
      )
    }
  }
  const header: Record<string, unknown> = Object.create(null)
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new LoraError('INVALID_ARGUMENT', `metadata["${k}"] must be a string, got ${typeof v}`)
    }
    header.__metadata__ = { ...metadata }
  }
  let offset = 0
  for (const [name, t] of entries) {
    const size = DTYPE_SIZE[t.dtype]
    if (!size) throw new LoraError('INVALID_ARGUMENT', `tensor "${name}": dtype ${String(t.dtype)} is not F32, F16 or BF16`)
    const wantArray = t.dtype === 'F32' ? Float32Array : Uint16Array
    const count = t.shape.reduce((a, b) => a * b, 1)
    if (!(t.data instanceof wantArray) || t.data.length !== count || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new LoraError(
        'INVALID_ARGUMENT',
        `tensor "${name}": ${t.dtype} shape [${t.shape.join(', ')}] needs a ${wantArray.name}[${count}], got ${t.data?.constructor?.name}[${t.data?.length}]`,
      )
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + count * size] }
    offset += count * size
  }
  const json = new TextEncoder().encode(JSON.stringify(header))
  const padded = Math.ceil(json.length / 8) * 8
  const out = new Uint8Array(8 + padded + offset)
  const dv = new DataView(out.buffer)
  dv.setBigUint64(0, BigInt(padded), true)
  out.fill(0x20, 8, 8 + padded)
  out.set(json, 8)
  let at = 8 + padded
  for (const [, t] of entries) {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at)
      at += t.data.byteLength
    } else {
      for (let i = 0; i < t.data.length; i++, at += t.dtype === 'F32' ? 4 : 2) {
        if (t.dtype === 'F32') dv.setFloat32(at, t.data[i], true)
        else dv.setUint16(at, t.data[i], true)
      }
    }
  }
  return out
}
