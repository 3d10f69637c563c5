/**
 * The float64 reference of the SGMV math: the spec every backend must match.
 *
 *   shrink:  h[t, s, :] = A[a][s] x[t]                         (a = ids[t, k])
 *   expand:  y[t, off_s : off_s + n_s] += c_a * B[a][s] h[t, s, :]
 *
 * Entries with id -1 contribute nothing. With K ids per token, y[t] receives the sum of the
 * deltas of all its adapters; with per-entry weights w[t, k], each delta is multiplied by its w. Weights are taken as stored (already rounded to the layer dtype).
 */

export interface RefAdapter {
  rank: number
  scale: number
  /** Per slice: [rank * inFeatures] row-major. */
  A: Float32Array[]
  /** Per slice: [n_s * rank] row-major. */
  B: Float32Array[]
}

export interface RefLayer {
  inFeatures: number
  sliceWidths: number[]
  /** Adapter of each slot (undefined = empty slot). */
  adapters: (RefAdapter | undefined)[]
}

/** h = A x[row]: A is [rank * inF], x is [T * inF]. Returns [rank] in float64. */
export function shrink(A: Float32Array, rank: number, x: Float32Array, row: number, inF: number): Float64Array {
  const h = new Float64Array(rank)
  for (let k = 0; k < rank; k++) {
    let acc = 0
    for (let i = 0; i < inF; i++) acc += A[k * inF + i] * x[row * inF + i]
    h[k] = acc
  }
  return h
}

/** d = scale * B h: B is [n * rank]. Returns [n] in float64. */
export function expand(B: Float32Array, n: number, rank: number, h: Float64Array, scale: number): Float64Array {
  const d = new Float64Array(n)
  for (let j = 0; j < n; j++) {
    let acc = 0
    for (let k = 0; k < rank; k++) acc += B[j * rank + k] * h[k]
    d[j] = scale * acc
  }
  return d
}

/**
 * The LoRA delta of a batch: [T * outFeatures] in float64 (y_after = y_before + delta).
 * @param ids [T * K] slot ids, -1 = none.
 * @param weights [T * K] per-entry weights (default: every weight 1).
 */
export function sgmv(layer: RefLayer, x: Float32Array, ids: Int32Array, adaptersPerToken = 1, weights?: Float32Array): Float64Array {
  const K = adaptersPerToken
  const T = ids.length / K
  const inF = layer.inFeatures
  const out = layer.sliceWidths.reduce((a, b) => a + b, 0)
  const delta = new Float64Array(T * out)
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < K; k++) {
      const slot = ids[t * K + k]
      if (slot < 0) continue
      const ad = layer.adapters[slot]
      if (!ad) throw new Error(`reference: slot ${slot} is empty`)
      let off = 0
      for (let s = 0; s < layer.sliceWidths.length; s++) {
        const n = layer.sliceWidths[s]
        const h = shrink(ad.A[s], ad.rank, x, t, inF)
        const d = expand(ad.B[s], n, ad.rank, h, ad.scale * (weights ? weights[t * K + k] : 1))
        for (let j = 0; j < n; j++) delta[t * out + off + j] += d[j]
        off += n
      }
    }
  }
  return delta
}

/**
 * The LoRA delta of an embedding layer: x is one token id per row, and A x (x one-hot) is column
 * tok of A, so token t with entry (slot a, weight w) gets w * c_a * B_a A_a[:, tokens[t]].
 * @param layer one slice; A [rank * vocab] (PEFT's lora_embedding_A), B [dim * rank]
 * @param tokens [T] token ids
 */
export function gather(layer: RefLayer, tokens: Int32Array, ids: Int32Array, adaptersPerToken = 1, weights?: Float32Array): Float64Array {
  const K = adaptersPerToken
  const T = tokens.length
  const vocab = layer.inFeatures
  const n = layer.sliceWidths[0]
  const delta = new Float64Array(T * n)
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < K; k++) {
      const slot = ids[t * K + k]
      if (slot < 0) continue
      const ad = layer.adapters[slot]
      if (!ad) throw new Error(`reference: slot ${slot} is empty`)
      const h = new Float64Array(ad.rank)
      for (let r = 0; r < ad.rank; r++) h[r] = ad.A[0][r * vocab + tokens[t]]
      const d = expand(ad.B[0], n, ad.rank, h, ad.scale * (weights ? weights[t * K + k] : 1))
      for (let j = 0; j < n; j++) delta[t * n + j] += d[j]
    }
  }
  return delta
}

/**
 * x rounded to the nearest value with `bits` significant bits (the implicit one included), the
 * smallest normal 2^minExp, the largest finite `max`: round to nearest, ties to even; past max
 * +-Infinity. Plain float64 arithmetic, independent of the library's bit manipulations.
 */
function roundNearestEven(x: number, bits: number, minExp: number, max: number): number {
  if (Number.isNaN(x) || x === 0 || !Number.isFinite(x)) return x
  const a = Math.abs(x)
  let e = Math.floor(Math.log2(a))
  if (2 ** e > a) e--
  if (2 ** (e + 1) <= a) e++
  const ulp = 2 ** (Math.max(e, minExp) - (bits - 1)) // below 2^minExp: the subnormal spacing
  const q = a / ulp // exact: ulp is a power of two
  const f = Math.floor(q)
  const r = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f
  const v = r * ulp
  // a value past max by half an ulp of max or more has no finite neighbour: it rounds to infinity
  return Math.sign(x) * (v > max ? Infinity : v)
}

/** Weights as a layer of `dtype` stores them: bf16 (8 significant bits) or f16 (11), round to nearest even. */
export function roundWeights(values: Float32Array, dtype: 'f32' | 'bf16' | 'f16'): Float32Array {
  if (dtype === 'f32') return new Float32Array(values)
  const [bits, minExp, max] = dtype === 'bf16' ? [8, -126, (2 - 2 ** -7) * 2 ** 127] : [11, -14, 65504]
  return Float32Array.from(values, (v) => roundNearestEven(v, bits, minExp, max))
}
