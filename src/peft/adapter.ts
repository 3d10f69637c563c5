/**
 * A PEFT LoRA adapter (adapter_config.json + safetensors weights) turned into per-module f32
 * matrices ready for `layer.setAdapter`.
 */
import { LoraError } from '../errors.js'
import { decodeHalf } from '../dtype.js'
import { isTargeted, moduleScale, parseLoraConfig, type LoraConfig } from './config.js'
import { readSafetensors, type SafetensorsDtype, type SafetensorsTensor } from './safetensors.js'

/** One LoRA-wrapped linear module of an adapter. */
export interface ParsedModule {
  rank: number
  /** lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (after rank/alpha patterns). */
  scale: number
  inFeatures: number
  outFeatures: number
  /** [rank * inFeatures] row-major (lora_A.weight). */
  A: Float32Array
  /** [outFeatures * rank] row-major (lora_B.weight). */
  B: Float32Array
  /**
   * An embedding module (lora_embedding_A [rank, vocab] / lora_embedding_B [dim, rank]):
   * inFeatures is the vocabulary size, outFeatures the embedding dimension, A and B as above.
   */
  embedding?: boolean
}

/** A base layer's weight saved in the adapter file (PEFT's save_embedding_layers): not applied. */
export interface BaseWeight {
  /** Shape as stored, e.g. [vocab, dim] for embed_tokens and lm_head. */
  shape: number[]
  /** Row-major f32 values. */
  data: Float32Array
}

/** An adapter after validation: every targeted module with its f32 weights. */
export interface ParsedAdapter {
  name: string
  /** Module path (e.g. 'model.layers.0.self_attn.q_proj') -> weights. */
  modules: Map<string, ParsedModule>
  /** Widest dtype stored in the file(s) (F32 > F16 > BF16). */
  dtype: SafetensorsDtype
  /** Bytes of the decoded f32 weights (what one set of kernel slots holds). */
  bytes: number
  /** Modules with weights in the file that the config does not target (PEFT ignores those too). */
  ignored: string[]
  /**
   * Base-layer weights the file holds (`<module>.base_layer.weight`, which PEFT saves when
   * embedding layers are targeted): module path -> weight. multilora applies no base weights;
   * they are kept so the caller can check them against its base model.
   */
  baseWeights: Map<string, BaseWeight>
  config: LoraConfig
}

const PREFIX = 'base_model.model.'
const LORA_KEY = /^(.+)\.lora_([AB])\.weight$/
const EMBEDDING_KEY = /^(.+)\.lora_embedding_([AB])$/
const BASE_KEY = /^(.+)\.base_layer\.weight$/

function unsupported(file: string, what: string): LoraError {
  return new LoraError('UNSUPPORTED_FEATURE', `${file}: ${what}`)
}

/**
 * Parse and validate a PEFT LoRA adapter. Everything is checked before anything is returned;
 * the result owns fresh Float32Arrays (never views of `weights`).
 * @param config adapter_config.json as an object or JSON text
 * @param weights adapter_model.safetensors, or every shard of a sharded checkpoint
 * @param name adapter name used in messages
 * @param fileNames names of the weight files, for messages (default adapter_model.safetensors)
 * @throws LoraError 'INVALID_FILE', 'UNSUPPORTED_FEATURE', 'UNSUPPORTED_DTYPE', 'INVALID_ARGUMENT'
 */
export function parseAdapter(
  config: unknown,
  weights: Uint8Array | readonly Uint8Array[],
  name: string,
  fileNames?: readonly string[],
): ParsedAdapter {
  if (typeof name !== 'string' || name.length === 0) {
    throw new LoraError('INVALID_ARGUMENT', `adapter name must be a non-empty string, got ${JSON.stringify(name)}`)
  }
  const cfgFile = `adapter "${name}" adapter_config.json`
  const cfg = parseLoraConfig(config, cfgFile)
  const shards = weights instanceof Uint8Array ? [weights] : weights
  if (!Array.isArray(shards) || shards.length === 0 || !shards.every((s) => s instanceof Uint8Array)) {
    throw new LoraError('INVALID_ARGUMENT', `adapter "${name}": weights must be a Uint8Array or a non-empty array of them`)
  }
  const label = (i: number): string =>
    `adapter "${name}" ${fileNames?.[i] ?? (shards.length > 1 ? `shard ${i}` : 'adapter_model.safetensors')}`

  // All tensors of all shards, each remembering its file for messages.
  const tensors = new Map<string, { t: SafetensorsTensor; file: string }>()
  shards.forEach((bytes, i) => {
    for (const [key, t] of readSafetensors(bytes, label(i)).tensors) {
      if (tensors.has(key)) throw new LoraError('INVALID_FILE', `${label(i)}: tensor "${key}" also appears in ${tensors.get(key)!.file}`)
      tensors.set(key, { t, file: label(i) })
    }
  })

  const pairs = new Map<string, { A?: SafetensorsTensor; B?: SafetensorsTensor; file: string; embedding: boolean }>()
  const base = new Map<string, { t: SafetensorsTensor; file: string }>()
  for (const [key, { t, file }] of tensors) {
    const path = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key
    const m = LORA_KEY.exec(path) ?? EMBEDDING_KEY.exec(path)
    if (m) {
      const embedding = m[0].includes('.lora_embedding_')
      const p = pairs.get(m[1]) ?? { file, embedding }
      if (p.embedding !== embedding) {
        throw new LoraError('INVALID_FILE', `${file}: module "${m[1]}" has both lora_${m[2]}.weight and lora_embedding_${m[2]} tensors`)
      }
      p[m[2] as 'A' | 'B'] = t
      pairs.set(m[1], p)
      continue
    }
    const b = BASE_KEY.exec(path)
    if (b) {
      base.set(b[1], { t, file })
      continue
    }
    if (/\.lora_magnitude_vector(\.|$)/.test(path)) throw unsupported(file, `"${key}": use_dora (DoRA magnitude vector) is not supported`)
    if (/\.lora_B\.bias$/.test(path)) throw unsupported(file, `"${key}": lora_bias is not supported`)
    if (cfg.modulesToSave?.some((s) => path === s || path.startsWith(`${s}.`) || path.includes(`.${s}.`))) {
      throw unsupported(file, `"${key}": saved modules_to_save weights (a fully trained copy of a base module) are not supported`)
    }
    throw unsupported(file, `"${key}" is not a LoRA weight (expected <module>.lora_A.weight / .lora_B.weight)`)
  }

  const modules = new Map<string, ParsedModule>()
  const ignored: string[] = []
  const rank = { F32: 3, F16: 2, BF16: 1 }
  let dtype: SafetensorsDtype | undefined
  let bytes = 0
  for (const [path, { A, B, file, embedding }] of pairs) {
    const [a, b] = embedding ? ['lora_embedding_A', 'lora_embedding_B'] : ['lora_A.weight', 'lora_B.weight']
    if (!A || !B) throw new LoraError('INVALID_FILE', `${file}: module "${path}" has ${A ? a : b} but no ${A ? b : a}`)
    if (!isTargeted(cfg, path)) {
      ignored.push(path)
      continue
    }
    const mod = checkShapes(cfg, path, A, B, file)
    if (embedding) mod.embedding = true
    modules.set(path, mod)
    bytes += (mod.A.length + mod.B.length) * 4
    for (const t of [A, B]) if (!dtype || rank[t.dtype] > rank[dtype]) dtype = t.dtype
  }
  if (modules.size === 0) {
    throw new LoraError(
      'INVALID_FILE',
      `adapter "${name}": no LoRA weights for any module its target_modules selects` +
        (ignored.length ? ` (found only untargeted ${ignored.slice(0, 3).join(', ')})` : ''),
    )
  }
  const baseWeights = new Map<string, BaseWeight>()
  for (const [path, { t, file }] of base) {
    if (!pairs.has(path)) {
      throw new LoraError('INVALID_FILE', `${file}: "${path}.base_layer.weight" belongs to no module with LoRA weights in the file`)
    }
    baseWeights.set(path, { shape: [...t.shape], data: toF32(t, `${path}.base_layer.weight`, file) })
  }
  return { name, modules, dtype: dtype!, bytes, ignored, baseWeights, config: cfg }
}

function checkShapes(cfg: LoraConfig, path: string, A: SafetensorsTensor, B: SafetensorsTensor, file: string): ParsedModule {
  if (A.shape.length === 4 || B.shape.length === 4)
    throw unsupported(file, `module "${path}": LoRA on a convolution layer (4-D lora weights) is not supported`)
  const { rank, scale } = moduleScale(cfg, path)
  const [rA, inF] = A.shape
  const [outF, rB] = B.shape
  if (A.shape.length !== 2 || B.shape.length !== 2 || rA !== rank || rB !== rank || inF < 1 || outF < 1) {
    throw new LoraError(
      'INVALID_FILE',
      `${file}: module "${path}" has lora_A [${A.shape.join(', ')}] and lora_B [${B.shape.join(', ')}]; ` +
        `expected [${rank}, in] and [out, ${rank}] (rank ${rank} from the config's r / rank_pattern)`,
    )
  }
  // the kernels hold the scale in f32: beyond its range every delta would be inf or NaN
  if (!Number.isFinite(Math.fround(scale))) {
    throw new LoraError('OUT_OF_RANGE', `${file}: module "${path}" has scale ${scale} (lora_alpha over r), outside the f32 range`)
  }
  return { rank, scale, inFeatures: inF, outFeatures: outF, A: toF32(A, `${path}.lora_A`, file), B: toF32(B, `${path}.lora_B`, file) }
}

/** Decode to a fresh f32 array (F16/BF16 are exact in f32) and refuse non-finite weights. */
function toF32(t: SafetensorsTensor, what: string, file: string): Float32Array {
  const out =
    t.dtype === 'F32' ? new Float32Array(t.data as Float32Array) : decodeHalf(t.data as Uint16Array, t.dtype === 'F16' ? 'f16' : 'bf16')
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) throw new LoraError('INVALID_FILE', `${file}: ${what} has a non-finite value ${out[i]} at index ${i}`)
  }
  return out
}
