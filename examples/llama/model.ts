/**
 * A small Llama forward pass (LlamaForCausalLM as transformers computes it, float32 weights):
 * token embedding, per layer RMSNorm -> grouped-query causal self-attention with rotate-half RoPE
 * -> residual, RMSNorm -> SiLU-gated MLP -> residual; final RMSNorm and the LM head.
 *
 * The base matmuls are plain loops here. Every linear module and the embedding also go through
 * `lora(module, x, y)`, which adds the LoRA deltas of the tokens' adapters to y (multilora's
 * rt.apply in main.ts). A KV cache per sequence lets decoding feed one new token per sequence.
 */
import { readSafetensors } from '../../src/index.js'

export interface LlamaConfig {
  vocab: number
  hidden: number
  intermediate: number
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  eps: number
  ropeTheta: number
}

/** Adds the LoRA delta of `module` to y: x is [T * in] activations, or [T] token ids for the embedding. */
export type LoraHook = (module: string, x: Float32Array | Int32Array, y: Float32Array) => Promise<void>

/** One token of a forward call: which sequence, and its id. Its position is the sequence's cache length. */
export interface TokenIn {
  seq: number
  id: number
}

/** The config.json fields the forward pass uses. */
export function parseConfig(json: Record<string, unknown>): LlamaConfig {
  const n = (k: string): number => {
    if (typeof json[k] !== 'number') throw new Error(`config.json: ${k} must be a number`)
    return json[k] as number
  }
  const rope = (json.rope_parameters ?? json.rope_scaling ?? {}) as { rope_theta?: number; rope_type?: string }
  if (rope.rope_type && rope.rope_type !== 'default')
    throw new Error(`config.json: rope_type ${rope.rope_type} is not supported (default only)`)
  if (json.tie_word_embeddings === true) throw new Error('config.json: tied embeddings are not supported')
  const heads = n('num_attention_heads')
  return {
    vocab: n('vocab_size'),
    hidden: n('hidden_size'),
    intermediate: n('intermediate_size'),
    layers: n('num_hidden_layers'),
    heads,
    kvHeads: (json.num_key_value_heads as number) ?? heads,
    headDim: (json.head_dim as number) ?? n('hidden_size') / heads,
    eps: n('rms_norm_eps'),
    ropeTheta: rope.rope_theta ?? (json.rope_theta as number) ?? 10000,
  }
}

/** y [T * out] = x [T * in] W^T, W [out * in] row-major (a torch Linear's weight). */
function matmul(x: Float32Array, W: Float32Array, T: number, inF: number, out: number): Float32Array {
  const y = new Float32Array(T * out)
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < out; o++) {
      let acc = 0
      for (let i = 0; i < inF; i++) acc += x[t * inF + i] * W[o * inF + i]
      y[t * out + o] = acc
    }
  }
  return y
}

function rmsNorm(x: Float32Array, w: Float32Array, T: number, d: number, eps: number): Float32Array {
  const y = new Float32Array(T * d)
  for (let t = 0; t < T; t++) {
    let ss = 0
    for (let i = 0; i < d; i++) ss += x[t * d + i] ** 2
    const r = 1 / Math.sqrt(ss / d + eps)
    for (let i = 0; i < d; i++) y[t * d + i] = w[i] * Math.fround(x[t * d + i] * r)
  }
  return y
}

/** Rotate-half RoPE in place on `heads` vectors of headDim at position pos. */
function rope(v: Float32Array, offset: number, heads: number, headDim: number, pos: number, theta: number): void {
  const half = headDim / 2
  for (let h = 0; h < heads; h++) {
    const b = offset + h * headDim
    for (let i = 0; i < half; i++) {
      const f = pos / theta ** ((2 * i) / headDim)
      const c = Math.cos(f)
      const s = Math.sin(f)
      const x1 = v[b + i]
      const x2 = v[b + i + half]
      v[b + i] = x1 * c - x2 * s
      v[b + i + half] = x2 * c + x1 * s
    }
  }
}

export class Llama {
  /** Per sequence, per layer: keys and values of every position so far ([pos][kvHeads * headDim]). */
  private cache: { k: Float32Array[]; v: Float32Array[] }[][] = []

  constructor(
    readonly config: LlamaConfig,
    private readonly w: Map<string, Float32Array>,
    private readonly lora: LoraHook,
  ) {}

  /** Load config.json and model.safetensors (F32) from a transformers checkpoint directory. */
  static async load(dir: string, lora: LoraHook): Promise<Llama> {
    const { readFile } = await import('node:fs/promises')
    const config = parseConfig(JSON.parse(await readFile(`${dir}/config.json`, 'utf8')))
    const file = readSafetensors(new Uint8Array(await readFile(`${dir}/model.safetensors`)), 'model.safetensors')
    const w = new Map<string, Float32Array>()
    for (const [name, t] of file.tensors) {
      if (t.dtype !== 'F32') throw new Error(`model.safetensors: ${name} is ${t.dtype}, the example reads F32 only`)
      w.set(name, t.data as Float32Array)
    }
    return new Llama(config, w, lora)
  }

  private weight(name: string): Float32Array {
    const v = this.w.get(name)
    if (!v) throw new Error(`model.safetensors has no ${name}`)
    return v
  }

  /** A linear module: base matmul, then its LoRA deltas. */
  private async linear(module: string, x: Float32Array, T: number, inF: number, out: number): Promise<Float32Array> {
    const y = matmul(x, this.weight(`${module}.weight`), T, inF, out)
    await this.lora(module, x, y)
    return y
  }

  /** Forget every sequence's cache. */
  reset(): void {
    this.cache = []
  }

  /**
   * Run the tokens (any mix of sequences; a sequence's tokens in order) through the model,
   * appending them to their sequences' caches. Returns the logits [T * vocab].
   */
  async forward(tokens: readonly TokenIn[]): Promise<Float32Array> {
    const c = this.config
    const T = tokens.length
    const D = c.hidden
    const kvD = c.kvHeads * c.headDim
    // positions: each sequence continues from its cache
    const pos = tokens.map(() => 0)
    const seen = new Map<number, number>()
    tokens.forEach((tok, t) => {
      const p = (this.cache[tok.seq]?.[0]?.k.length ?? 0) + (seen.get(tok.seq) ?? 0)
      pos[t] = p
      seen.set(tok.seq, (seen.get(tok.seq) ?? 0) + 1)
    })
    for (const s of seen.keys()) this.cache[s] ??= Array.from({ length: c.layers }, () => ({ k: [], v: [] }))

    const ids = Int32Array.from(tokens, (t) => t.id)
    const E = this.weight('model.embed_tokens.weight')
    let h: Float32Array = new Float32Array(T * D)
    for (let t = 0; t < T; t++) h.set(E.subarray(ids[t] * D, (ids[t] + 1) * D), t * D)
    await this.lora('model.embed_tokens', ids, h)

    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}`
      const x = rmsNorm(h, this.weight(`${p}.input_layernorm.weight`), T, D, c.eps)
      const q = await this.linear(`${p}.self_attn.q_proj`, x, T, D, c.heads * c.headDim)
      const k = await this.linear(`${p}.self_attn.k_proj`, x, T, D, kvD)
      const v = await this.linear(`${p}.self_attn.v_proj`, x, T, D, kvD)
      const attn = new Float32Array(T * c.heads * c.headDim)
      for (let t = 0; t < T; t++) {
        rope(q, t * c.heads * c.headDim, c.heads, c.headDim, pos[t], c.ropeTheta)
        rope(k, t * kvD, c.kvHeads, c.headDim, pos[t], c.ropeTheta)
        const cache = this.cache[tokens[t].seq][l]
        cache.k[pos[t]] = k.slice(t * kvD, (t + 1) * kvD)
        cache.v[pos[t]] = v.slice(t * kvD, (t + 1) * kvD)
      }
      // causal attention over the cache; query head hq reads key/value head hq / (heads / kvHeads)
      for (let t = 0; t < T; t++) {
        const cache = this.cache[tokens[t].seq][l]
        const n = pos[t] + 1
        for (let hq = 0; hq < c.heads; hq++) {
          const kv = Math.floor(hq / (c.heads / c.kvHeads)) * c.headDim
          const qo = (t * c.heads + hq) * c.headDim
          const scores = new Float64Array(n)
          let max = -Infinity
          for (let j = 0; j < n; j++) {
            let s = 0
            for (let i = 0; i < c.headDim; i++) s += q[qo + i] * cache.k[j][kv + i]
            scores[j] = s / Math.sqrt(c.headDim)
            max = Math.max(max, scores[j])
          }
          let sum = 0
          for (let j = 0; j < n; j++) sum += scores[j] = Math.exp(scores[j] - max)
          for (let i = 0; i < c.headDim; i++) {
            let acc = 0
            for (let j = 0; j < n; j++) acc += scores[j] * cache.v[j][kv + i]
            attn[qo + i] = acc / sum
          }
        }
      }
      const o = await this.linear(`${p}.self_attn.o_proj`, attn, T, c.heads * c.headDim, D)
      for (let i = 0; i < h.length; i++) h[i] += o[i]

      const x2 = rmsNorm(h, this.weight(`${p}.post_attention_layernorm.weight`), T, D, c.eps)
      const gate = await this.linear(`${p}.mlp.gate_proj`, x2, T, D, c.intermediate)
      const up = await this.linear(`${p}.mlp.up_proj`, x2, T, D, c.intermediate)
      for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i]
      const down = await this.linear(`${p}.mlp.down_proj`, gate, T, c.intermediate, D)
      for (let i = 0; i < h.length; i++) h[i] += down[i]
    }
    h = rmsNorm(h, this.weight('model.norm.weight'), T, D, c.eps)
    return this.linear('lm_head', h, T, D, c.vocab)
  }
}
