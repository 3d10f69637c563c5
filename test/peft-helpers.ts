/** Test helpers: write PEFT-style adapters with the library's own safetensors writer. */
import { encodeHalf } from '../src/dtype.js'
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../src/peft/safetensors.js'
import { Rng } from './random.js'
import { roundWeights } from './reference.js'

export interface TestModule {
  rank: number
  inFeatures: number
  outFeatures: number
  /** Stored dtype; default F32. Values are rounded to it before writing. */
  dtype?: SafetensorsDtype
}

/** The config PEFT writes, minus fields that do not matter here, plus `extra`. */
export function peftConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    r: 8,
    lora_alpha: 16,
    use_rslora: false,
    rank_pattern: {},
    alpha_pattern: {},
    target_modules: ['q_proj', 'v_proj'],
    fan_in_fan_out: false,
    layers_to_transform: null,
    layers_pattern: null,
    use_dora: false,
    lora_bias: false,
    modules_to_save: null,
    bias: 'none',
    lora_dropout: 0,
    ...extra,
  }
}

/** Random weights for each module, as PEFT stores them: lora_A [r, in], lora_B [out, r]. */
export function makeWeights(modules: Record<string, TestModule>, seed = 1, extra: Record<string, TensorToWrite> = {}): Uint8Array {
  const rng = new Rng(seed)
  const tensors = new Map<string, TensorToWrite>()
  const tensor = (dtype: SafetensorsDtype, shape: number[]): TensorToWrite => {
    const values = rng.array(shape[0] * shape[1], 0.5)
    return dtype === 'F32' ? { dtype, shape, data: values } : { dtype, shape, data: encodeHalf(values, dtype === 'F16' ? 'f16' : 'bf16') }
  }
  for (const [path, m] of Object.entries(modules)) {
    tensors.set(`base_model.model.${path}.lora_A.weight`, tensor(m.dtype ?? 'F32', [m.rank, m.inFeatures]))
    tensors.set(`base_model.model.${path}.lora_B.weight`, tensor(m.dtype ?? 'F32', [m.outFeatures, m.rank]))
  }
  for (const [k, v] of Object.entries(extra)) tensors.set(k, v)
  return writeSafetensors(tensors, { format: 'pt' })
}

/**
 * The values makeWeights(modules, seed) writes, per module path (the same random sequence), as
 * a layer of the stored dtype holds them (rounded by the test reference, not the library): the
 * expected weights of a test adapter, independent of the loader.
 */
export function weightValues(
  modules: Record<string, TestModule>,
  seed = 1,
): Map<string, { A: Float32Array; B: Float32Array; rank: number; inFeatures: number; outFeatures: number }> {
  const rng = new Rng(seed)
  const out = new Map<string, { A: Float32Array; B: Float32Array; rank: number; inFeatures: number; outFeatures: number }>()
  for (const [path, m] of Object.entries(modules)) {
    const dtype = m.dtype === 'F16' ? 'f16' : m.dtype === 'BF16' ? 'bf16' : 'f32'
    const A = roundWeights(rng.array(m.rank * m.inFeatures, 0.5), dtype)
    const B = roundWeights(rng.array(m.outFeatures * m.rank, 0.5), dtype)
    out.set(path, { A, B, rank: m.rank, inFeatures: m.inFeatures, outFeatures: m.outFeatures })
  }
  return out
}

/** Two-layer toy model paths: model.layers.{0,1}.self_attn.{q,v}_proj and .mlp.up_proj. */
export function toyModules(
  rank = 8,
  dtype: SafetensorsDtype = 'F32',
  layers = [0, 1],
  names = ['q_proj', 'v_proj'],
): Record<string, TestModule> {
  const out: Record<string, TestModule> = {}
  for (const l of layers) {
    for (const n of names) {
      const inner = n === 'up_proj' ? 'mlp' : 'self_attn'
      out[`model.layers.${l}.${inner}.${n}`] = { rank, inFeatures: 12, outFeatures: n === 'up_proj' ? 20 : n === 'v_proj' ? 6 : 12, dtype }
    }
  }
  return out
}

export { expectLoraError } from './compare.js'
