import { describe, LoraError } from './errors.js'
import { f32ToF16Bits, roundToDtype } from './dtype.js'
import type {
  AdapterWeights,
  ApplyOptions,
  BackendChoice,
  EncodeTarget,
  LayerOptions,
  LayerSpec,
  PreparedAdapter,
  WeightDtype,
} from './types.js'

/** Largest accepted width, rank or slot count: keeps index arithmetic inside 32 bits. */
const MAX_SIZE = 1 << 24
/** The weight dtypes a layer may store. */
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['f32', 'bf16', 'f16']
/** Most adapters one token may name (K). */
export const MAX_ADAPTERS_PER_TOKEN = 64
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'wasm', 'webgpu']

export function checkInt(name: string, value: unknown, min: number, max = MAX_SIZE): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new LoraError('INVALID_ARGUMENT', `${name} must be an integer, got ${describe(value)}`)
  }
  if (value < min || value > max) throw new LoraError('OUT_OF_RANGE', `${name} must be in ${min}..${max}, got ${value}`)
  return value
}

export function checkBackend(name: string, value: unknown): BackendChoice {
  if (!BACKEND_CHOICES.includes(value as BackendChoice)) {
    throw new LoraError('UNKNOWN_BACKEND', `${name} must be one of ${BACKEND_CHOICES.join(', ')}, got ${describe(value)}`)
  }
  return value as BackendChoice
}

/** adaptersPerToken (K) in 1..MAX_ADAPTERS_PER_TOKEN. */
export function checkAdaptersPerToken(name: string, value: unknown): number {
  return checkInt(name, value, 1, MAX_ADAPTERS_PER_TOKEN)
}

/** Tokens in `entries` ids at K per token (entries must be a multiple of K). */
export function tokensOf(entries: number, K: number): number {
  if (entries % K !== 0) throw new LoraError('SHAPE_MISMATCH', `ids has ${entries} entries, not a multiple of adaptersPerToken = ${K}`)
  return entries / K
}

/** Validate createLayer options into a LayerSpec. */
export function checkLayerOptions(options: LayerOptions): LayerSpec {
  if (typeof options !== 'object' || options === null) {
    throw new LoraError('INVALID_ARGUMENT', `createLayer options must be an object, got ${describe(options)}`)
  }
  const inFeatures = checkInt('inFeatures', options.inFeatures, 1)
  const out = options.outFeatures
  const widths = typeof out === 'number' ? [out] : Array.isArray(out) ? [...out] : null
  if (!widths || widths.length === 0) {
    throw new LoraError('INVALID_ARGUMENT', `outFeatures must be a number or a non-empty array of numbers, got ${describe(out)}`)
  }
  widths.forEach((w, s) => checkInt(`outFeatures[${s}]`, w, 1))
  const maxAdapters = checkInt('maxAdapters', options.maxAdapters, 1, 65536)
  const maxRank = checkInt('maxRank', options.maxRank, 1, 4096)
  const weightDtype = options.weightDtype ?? 'f32'
  if (!WEIGHT_DTYPES.includes(weightDtype)) {
    throw new LoraError('UNSUPPORTED_DTYPE', `weightDtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${describe(weightDtype)}`)
  }
  const offsets: number[] = []
  let outFeatures = 0
  for (const w of widths) {
    offsets.push(outFeatures)
    outFeatures += w
  }
  checkInt('outFeatures (sum of slices)', outFeatures, 1)
  const embedding = options.embedding ?? false
  if (typeof embedding !== 'boolean') throw new LoraError('INVALID_ARGUMENT', `embedding must be a boolean, got ${describe(embedding)}`)
  if (embedding && widths.length !== 1) {
    throw new LoraError('SHAPE_MISMATCH', `an embedding layer has one output slice, got outFeatures [${widths.join(', ')}]`)
  }
  const spec: LayerSpec = { inFeatures, sliceWidths: widths, sliceOffsets: offsets, outFeatures, maxAdapters, maxRank, weightDtype }
  if (embedding) spec.embedding = true
  return spec
}

/** Validate setAdapter arguments; returns the adapter with weights rounded to the layer dtype. */
export function prepareAdapter(spec: LayerSpec, slot: unknown, adapter: AdapterWeights): PreparedAdapter {
  checkInt('slot', slot, 0, spec.maxAdapters - 1)
  if (typeof adapter !== 'object' || adapter === null) {
    throw new LoraError('INVALID_ARGUMENT', `adapter must be an object { rank, scale, A, B }, got ${describe(adapter)}`)
  }
  const rank = checkInt('adapter.rank', adapter.rank, 1, spec.maxRank)
  if (typeof adapter.scale !== 'number' || !Number.isFinite(Math.fround(adapter.scale))) {
    throw new LoraError('INVALID_ARGUMENT', `adapter.scale must be a finite number in the f32 range, got ${describe(adapter.scale)}`)
  }
  const S = spec.sliceWidths.length
  const A = slices('adapter.A', adapter.A, S)
  const B = slices('adapter.B', adapter.B, S)
  const out: PreparedAdapter = { rank, scale: adapter.scale, A: [], B: [] }
  for (let s = 0; s < S; s++) {
    const n = spec.sliceWidths[s]
    out.A.push(
      checkWeights(`adapter.A[${s}]`, A[s], rank * spec.inFeatures, `rank * inFeatures = ${rank} * ${spec.inFeatures}`, spec.weightDtype),
    )
    out.B.push(checkWeights(`adapter.B[${s}]`, B[s], n * rank, `outFeatures[${s}] * rank = ${n} * ${rank}`, spec.weightDtype))
  }
  return out
}

function slices(name: string, value: unknown, S: number): Float32Array[] {
  if (value instanceof Float32Array) {
    if (S !== 1)
      throw new LoraError('SHAPE_MISMATCH', `${name} must be an array of ${S} Float32Arrays (one per slice), got one Float32Array`)
    return [value]
  }
  if (!Array.isArray(value) || value.length !== S) {
    throw new LoraError(
      'SHAPE_MISMATCH',
      `${name} must be ${S === 1 ? 'a Float32Array or ' : ''}an array of ${S} Float32Arrays, got ${describe(value)}`,
    )
  }
  return value as Float32Array[]
}

function checkWeights(name: string, w: unknown, length: number, shape: string, dtype: WeightDtype): Float32Array {
  if (!(w instanceof Float32Array)) throw new LoraError('INVALID_ARGUMENT', `${name} must be a Float32Array, got ${describe(w)}`)
  if (w.length !== length) throw new LoraError('SHAPE_MISMATCH', `${name} must have ${length} values (${shape}), got ${w.length}`)
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i])) throw new LoraError('INVALID_ARGUMENT', `${name}[${i}] is not finite: ${w[i]}`)
  }
  if (dtype === 'f16') {
    for (let i = 0; i < w.length; i++) {
      if ((f32ToF16Bits(w[i]) & 0x7c00) === 0x7c00) {
        throw new LoraError('VALUE_OUT_OF_RANGE', `${name}[${i}] = ${w[i]} does not fit f16 (|value| must round to <= 65504)`)
      }
    }
  }
  return roundToDtype(w, dtype)
}

/** Validate apply arguments (everything but slot occupancy). Returns T and K. */
export function checkApply(
  spec: LayerSpec,
  x: unknown,
  y: unknown,
  ids: unknown,
  adaptersPerToken: unknown,
  tokens?: unknown,
): { T: number; K: number } {
  const K = checkAdaptersPerToken('options.adaptersPerToken', adaptersPerToken ?? 1)
  if (!(ids instanceof Int32Array))
    throw new LoraError('INVALID_ARGUMENT', `ids must be an Int32Array or a GPUBuffer, got ${describe(ids)}`)
  const T = tokensOf(ids.length, K)
  if (tokens !== undefined && checkInt('options.tokens', tokens, 0, 2 ** 24) !== T) {
    throw new LoraError(
      'SHAPE_MISMATCH',
      `options.tokens = ${String(tokens)} but ids has ${ids.length} entries = ${T} tokens * adaptersPerToken ${K}`,
    )
  }
  if (spec.embedding) checkTokenIds(x, T, spec.inFeatures)
  else checkData('x', x, T, spec.inFeatures, 'inFeatures')
  checkData('y', y, T, spec.outFeatures, 'outFeatures')
  if (x === y && isGpuBuffer(x)) {
    throw new LoraError('INVALID_ARGUMENT', `x and y are the same GPUBuffer (${gpuBufferInfo(x).size} bytes): y must not overlap x`)
  }
  if (x instanceof Float32Array && y instanceof Float32Array && x.buffer === y.buffer && x.length > 0 && y.length > 0) {
    const x1 = x.byteOffset + x.byteLength,
      y1 = y.byteOffset + y.byteLength
    if (x.byteOffset < y1 && y.byteOffset < x1) {
      throw new LoraError('INVALID_ARGUMENT', `x (bytes ${x.byteOffset}..${x1}) and y (bytes ${y.byteOffset}..${y1}) overlap in one buffer`)
    }
  }
  return { T, K }
}

/** An embedding layer's x: T token ids in 0..vocab-1 (Int32Array), or an i32 GPUBuffer of at least T * 4 bytes. */
function checkTokenIds(x: unknown, T: number, vocab: number): void {
  if (x instanceof Int32Array) {
    if (x.length !== T)
      throw new LoraError('SHAPE_MISMATCH', `x (token ids of an embedding layer) must have T = ${T} values, got ${x.length}`)
    for (let i = 0; i < T; i++) {
      if (x[i] < 0 || x[i] >= vocab)
        throw new LoraError('OUT_OF_RANGE', `x[${i}] = ${x[i]} is not a token id in 0..${vocab - 1} (x: Int32Array[${T}])`)
    }
  } else if (isGpuBuffer(x)) {
    const { size } = gpuBufferInfo(x)
    if (size < T * 4) throw new LoraError('SHAPE_MISMATCH', `x: GPUBuffer of ${size} bytes, need T * 4 = ${T * 4} (i32 token ids)`)
  } else {
    throw new LoraError('INVALID_ARGUMENT', `x of an embedding layer must be an Int32Array of token ids or a GPUBuffer, got ${describe(x)}`)
  }
}

/**
 * GPUBuffers recognised already, with their size and usage (both fixed at creation): later checks
 * of the same buffer, here and in the WebGPU backend's layer, are a lookup, not getters that cross
 * into the WebGPU implementation (about 0.4 us each in Node with Dawn, read 3-5 times per call).
 */
const gpuBuffers = new WeakMap<object, { size: number; usage: number }>()

/** A GPUBuffer (checked by shape, so a buffer from any WebGPU implementation is recognised). */
export function isGpuBuffer(v: unknown): v is GPUBuffer {
  if (typeof v !== 'object' || v === null) return false
  if (gpuBuffers.has(v)) return true
  const b = v as GPUBuffer
  if (typeof b.size === 'number' && typeof b.usage === 'number' && typeof b.mapAsync === 'function') {
    gpuBuffers.set(v, { size: b.size, usage: b.usage })
    return true
  }
  return false
}

/** A GPUBuffer's size and usage, read from the buffer once and then looked up. */
export function gpuBufferInfo(b: GPUBuffer): { size: number; usage: number } {
  let info = gpuBuffers.get(b)
  if (!info) gpuBuffers.set(b, (info = { size: b.size, usage: b.usage }))
  return info
}

/** x or y: a Float32Array of exactly T * width values, or a GPUBuffer of at least that many bytes. */
function checkData(name: string, v: unknown, T: number, width: number, widthName: string): void {
  const n = T * width
  if (v instanceof Float32Array) {
    if (v.length !== n) {
      // a HostArray's view read before the wasm memory grew is detached: length 0
      const hint =
        v.length === 0 && v.buffer.byteLength === 0
          ? " (an empty or detached buffer: read a HostArray's `array` again after the runtime allocated)"
          : ''
      throw new LoraError('SHAPE_MISMATCH', `${name} must have T * ${widthName} = ${T} * ${width} = ${n} values, got ${v.length}${hint}`)
    }
  } else if (isGpuBuffer(v)) {
    const { size } = gpuBufferInfo(v)
    if (size < n * 4) throw new LoraError('SHAPE_MISMATCH', `${name}: GPUBuffer of ${size} bytes, need T * ${widthName} * 4 = ${n * 4}`)
  } else {
    throw new LoraError('INVALID_ARGUMENT', `${name} must be a Float32Array or a GPUBuffer, got ${describe(v)}`)
  }
}

/** Every id in -1..maxAdapters-1, naming a filled slot, no slot twice in one token. */
export function checkIds(ids: Int32Array, K: number, maxAdapters: number, filled: readonly boolean[]): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]
    if (id === -1) continue
    if (id < -1 || id >= maxAdapters) {
      throw new LoraError('OUT_OF_RANGE', `ids[${i}] = ${id} is outside -1..${maxAdapters - 1} (ids: Int32Array[${ids.length}])`)
    }
    if (!filled[id]) throw new LoraError('SLOT_EMPTY', `ids[${i}] = ${id} names slot ${id}, which holds no adapter`)
    const t0 = i - (i % K)
    for (let j = t0; j < i; j++) {
      if (ids[j] === id) throw new LoraError('DUPLICATE_ADAPTER', `token ${t0 / K} names slot ${id} twice (ids[${j}] and ids[${i}])`)
    }
  }
}

/** Per-entry weights of an apply: a Float32Array of ids.length finite values. */
export function checkTokenWeights(weights: unknown, idsLength: number): Float32Array {
  if (!(weights instanceof Float32Array))
    throw new LoraError('INVALID_ARGUMENT', `options.weights must be a Float32Array, got ${describe(weights)}`)
  if (weights.length !== idsLength) {
    throw new LoraError('SHAPE_MISMATCH', `options.weights has ${weights.length} values, ids has ${idsLength} (one weight per id)`)
  }
  for (let i = 0; i < weights.length; i++) {
    if (!Number.isFinite(weights[i])) throw new LoraError('INVALID_ARGUMENT', `options.weights[${i}] is not finite: ${weights[i]}`)
  }
  return weights
}

export function isCommandEncoder(e: unknown): e is GPUCommandEncoder {
  return typeof (e as GPUCommandEncoder | null)?.beginComputePass === 'function'
}

/** A compute pass encoder (checked by shape, as isGpuBuffer: any WebGPU implementation's). */
export function isComputePass(e: unknown): e is GPUComputePassEncoder {
  return typeof (e as GPUComputePassEncoder | null)?.dispatchWorkgroups === 'function'
}

/** Validate the arguments of `layer.encode` (the same checks as apply's, x and y on the GPU, a real encoder). */
export function checkEncode(
  spec: LayerSpec,
  encoder: EncodeTarget,
  x: GPUBuffer,
  y: GPUBuffer,
  ids: Int32Array,
  options: ApplyOptions,
  filled: readonly boolean[],
): { K: number; weights: Float32Array | undefined } {
  if (typeof options !== 'object' || options === null) {
    throw new LoraError('INVALID_ARGUMENT', `options must be an object, got ${String(options)}`)
  }
  if (options.backend !== undefined) checkBackend('options.backend', options.backend)
  const { K } = checkApply(spec, x, y, ids, options.adaptersPerToken, options.tokens)
  if (!isGpuBuffer(x) || !isGpuBuffer(y)) {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `encode needs x and y as GPUBuffers on rt.device, got ${isGpuBuffer(x) ? 'y' : 'x'} as a host array`,
    )
  }
  if (!isCommandEncoder(encoder) && !isComputePass(encoder)) {
    throw new LoraError('INVALID_ARGUMENT', `encoder must be a GPUCommandEncoder or a GPUComputePassEncoder, got ${String(encoder)}`)
  }
  checkIds(ids, K, spec.maxAdapters, filled)
  return { K, weights: options.weights === undefined ? undefined : checkTokenWeights(options.weights, ids.length) }
}
