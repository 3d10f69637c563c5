import { describe, expect, it } from 'vitest'
import { decodeHalf } from '../src/dtype.js'
import { parseAdapter } from '../src/peft/adapter.js'
import { findPatternKey, isTargeted, moduleScale, parseLoraConfig } from '../src/peft/config.js'
import { readSafetensors, writeSafetensors } from '../src/peft/safetensors.js'
import { expectLoraError, makeWeights, peftConfig, toyModules } from './peft-helpers.js'

const Q0 = 'model.layers.0.self_attn.q_proj'
const V0 = 'model.layers.0.self_attn.v_proj'
const Q1 = 'model.layers.1.self_attn.q_proj'
const V1 = 'model.layers.1.self_attn.v_proj'

describe('parseAdapter: weights and scale', () => {
  it('reads every module with A [r*in], B [out*r], scale alpha/r, bytes, dtype', () => {
    const weights = makeWeights(toyModules(8))
    const ad = parseAdapter(peftConfig(), weights, 'toy')
    expect([...ad.modules.keys()].sort()).toEqual([Q0, V0, Q1, V1])
    const file = readSafetensors(weights)
    for (const [path, m] of ad.modules) {
      expect(m.rank).toBe(8)
      expect(m.scale).toBe(16 / 8)
      expect(m.A).toEqual(file.tensors.get(`base_model.model.${path}.lora_A.weight`)!.data)
      expect(m.B).toEqual(file.tensors.get(`base_model.model.${path}.lora_B.weight`)!.data)
      expect(m.A.buffer).not.toBe(weights.buffer) // owns its memory
    }
    expect(ad.modules.get(V0)!.outFeatures).toBe(6)
    expect(ad.modules.get(V0)!.inFeatures).toBe(12)
    expect(ad.dtype).toBe('F32')
    expect(ad.bytes).toBe(2 * 4 * (8 * 12 + 12 * 8) + 2 * 4 * (8 * 12 + 6 * 8))
  })

  it('F16 and BF16 weights are decoded exactly', () => {
    for (const dtype of ['F16', 'BF16'] as const) {
      const weights = makeWeights(toyModules(4, dtype))
      const ad = parseAdapter(peftConfig({ r: 4 }), weights, 'half')
      expect(ad.dtype).toBe(dtype)
      const raw = readSafetensors(weights).tensors.get(`base_model.model.${Q1}.lora_B.weight`)!.data as Uint16Array
      expect(ad.modules.get(Q1)!.B).toEqual(decodeHalf(raw, dtype === 'F16' ? 'f16' : 'bf16'))
    }
  })

  it('use_rslora: scale = alpha / sqrt(r)', () => {
    const ad = parseAdapter(peftConfig({ r: 16, lora_alpha: 8, use_rslora: true }), makeWeights(toyModules(16)), 'rs')
    expect(ad.modules.get(Q0)!.scale).toBe(8 / 4)
  })

  it('config as JSON text and sharded weights (two files) work', () => {
    const all = toyModules(8)
    const [a, b] = [Object.fromEntries(Object.entries(all).slice(0, 2)), Object.fromEntries(Object.entries(all).slice(2))]
    const ad = parseAdapter(JSON.stringify(peftConfig()), [makeWeights(a), makeWeights(b, 2)], 'sharded')
    expect(ad.modules.size).toBe(4)
  })

  it('fan_in_fan_out changes nothing: PEFT stores lora_A [r, in] and lora_B [out, r] either way', () => {
    const w = makeWeights(toyModules(8))
    const plain = parseAdapter(peftConfig(), w, 'a')
    const conv1d = parseAdapter(peftConfig({ fan_in_fan_out: true }), w, 'b')
    expect(conv1d.config.fanInFanOut).toBe(true)
    for (const [p, m] of plain.modules) expect(conv1d.modules.get(p)).toEqual(m)
  })
})

describe('rank_pattern / alpha_pattern (PEFT get_pattern_key)', () => {
  it('a pattern matches the whole path or a suffix after a dot, as a regex', () => {
    const c = parseLoraConfig(peftConfig({ rank_pattern: { q_proj: 4 } }))
    expect(findPatternKey(['q_proj'], c, Q0)).toBe('q_proj')
    expect(findPatternKey(['proj'], c, Q0)).toBeUndefined() // not after a '.'
    expect(findPatternKey(['.*_proj'], c, Q0)).toBe('.*_proj')
    expect(findPatternKey(['layers.0.self_attn.q_proj'], c, Q0)).toBe('layers.0.self_attn.q_proj')
    expect(findPatternKey(['layers.0.self_attn.q_proj'], c, 'model.layers.10.self_attn.q_proj')).toBeUndefined()
    expect(findPatternKey([Q0], c, Q0)).toBe(Q0)
    expect(findPatternKey(['q_pro'], c, Q0)).toBeUndefined() // anchored at the end
  })

  it('the first matching key in file order wins, not the most specific', () => {
    const c = parseLoraConfig(peftConfig({ rank_pattern: { q_proj: 4, 'layers.0.self_attn.q_proj': 2 } }))
    expect(moduleScale(c, Q0).rank).toBe(4)
    const d = parseLoraConfig(peftConfig({ rank_pattern: { 'layers.0.self_attn.q_proj': 2, q_proj: 4 } }))
    expect(moduleScale(d, Q0).rank).toBe(2)
    expect(moduleScale(d, Q1).rank).toBe(4)
  })

  it('rank_pattern sets r per module; weights must have that rank; scale uses it', async () => {
    const mods = toyModules(8)
    mods[Q1].rank = 2
    const cfg = peftConfig({ rank_pattern: { 'layers\\.1\\.self_attn\\.q_proj': 2 } })
    const ad = parseAdapter(cfg, makeWeights(mods), 'rp')
    expect(ad.modules.get(Q1)!.rank).toBe(2)
    expect(ad.modules.get(Q1)!.scale).toBe(16 / 2)
    expect(ad.modules.get(Q0)!.scale).toBe(16 / 8)
    // The same file without the pattern: the rank-2 module disagrees with r = 8.
    await expectLoraError(
      () => parseAdapter(peftConfig(), makeWeights(mods), 'rp'),
      'INVALID_FILE',
      /layers\.1\.self_attn\.q_proj.*\[2, 12\].*expected \[8, in\]/,
    )
  })

  it('alpha_pattern sets alpha per module', () => {
    const ad = parseAdapter(peftConfig({ alpha_pattern: { v_proj: 64 } }), makeWeights(toyModules(8)), 'ap')
    expect(ad.modules.get(V1)!.scale).toBe(64 / 8)
    expect(ad.modules.get(Q1)!.scale).toBe(16 / 8)
  })

  it('rslora with patterns: alpha_pattern / sqrt(rank_pattern)', () => {
    const c = parseLoraConfig(peftConfig({ use_rslora: true, rank_pattern: { q_proj: 4 }, alpha_pattern: { q_proj: 6 } }))
    expect(moduleScale(c, Q0)).toEqual({ rank: 4, alpha: 6, scale: 3 })
    expect(moduleScale(c, V0)).toEqual({ rank: 8, alpha: 16, scale: 16 / Math.sqrt(8) })
  })
})

describe('target_modules, layers_to_transform, exclude_modules (PEFT check_target_module_exists)', () => {
  const target = (extra: Record<string, unknown>, path: string): boolean => isTargeted(parseLoraConfig(peftConfig(extra)), path)

  it('a list matches an exact name or a suffix after a dot', () => {
    expect(target({ target_modules: ['q_proj'] }, Q0)).toBe(true)
    expect(target({ target_modules: ['self_attn.q_proj'] }, Q0)).toBe(true)
    expect(target({ target_modules: ['_proj'] }, Q0)).toBe(false)
    expect(target({ target_modules: [Q0] }, Q0)).toBe(true)
    expect(target({ target_modules: ['v_proj'] }, Q0)).toBe(false)
  })

  it('a string is a regex that must match the full path', () => {
    expect(target({ target_modules: 'q_proj' }, Q0)).toBe(false)
    expect(target({ target_modules: '.*\\.layers\\.1\\..*(q|v)_proj' }, Q1)).toBe(true)
    expect(target({ target_modules: '.*\\.layers\\.1\\..*(q|v)_proj' }, Q0)).toBe(false)
  })

  it('regex target_modules: untargeted modules in the file are ignored and reported', () => {
    const ad = parseAdapter(peftConfig({ target_modules: '.*\\.layers\\.1\\..*(q|v)_proj' }), makeWeights(toyModules(8)), 'rx')
    expect([...ad.modules.keys()].sort()).toEqual([Q1, V1])
    expect(ad.ignored.sort()).toEqual([Q0, V0])
  })

  it('layers_to_transform: a list, an int, with and without layers_pattern', () => {
    expect(target({ layers_to_transform: [1] }, Q1)).toBe(true)
    expect(target({ layers_to_transform: [1] }, Q0)).toBe(false)
    expect(target({ layers_to_transform: 0 }, Q0)).toBe(true)
    expect(target({ layers_to_transform: [0], layers_pattern: 'layers' }, Q0)).toBe(true)
    expect(target({ layers_to_transform: [0], layers_pattern: ['blocks'] }, Q0)).toBe(false)
    // The first numbered segment is the layer, not a deeper index (MoE experts).
    expect(target({ target_modules: ['w1'], layers_to_transform: [1] }, 'model.layers.1.experts.0.w1')).toBe(true)
    // An exact name in target_modules bypasses layers_to_transform, as in PEFT.
    expect(target({ target_modules: [Q0], layers_to_transform: [1] }, Q0)).toBe(true)
    const ad = parseAdapter(peftConfig({ layers_to_transform: [1] }), makeWeights(toyModules(8)), 'lt')
    expect([...ad.modules.keys()].sort()).toEqual([Q1, V1])
  })

  it('patterns from the file run in linear time: backtracking bombs answer at once', () => {
    // each of these takes ~2^40 steps in a backtracking engine (V8's: 25 ms at 22 characters,
    // doubling with each one more), so the test would time out there
    const a40 = 'a'.repeat(40)
    expect(target({ target_modules: 'model\\.(a+)+b' }, `model.${a40}.q`)).toBe(false)
    expect(findPatternKey(['(a+)+b'], parseLoraConfig(peftConfig({ rank_pattern: { '(a+)+b': 4 } })), `model.${a40}`)).toBeUndefined()
    expect(target({ exclude_modules: 'model\\.(x+x+)+y' }, `model.${'x'.repeat(50)}.q_proj`)).toBe(true)
  })

  it("Python's named groups work; lookaround is UNSUPPORTED_FEATURE naming the field", async () => {
    expect(target({ target_modules: '.*\\.(?P<proj>q|v)_proj' }, Q0)).toBe(true)
    await expectLoraError(
      () => parseLoraConfig(peftConfig({ target_modules: '^(?!.*vision).*q_proj' })),
      'UNSUPPORTED_FEATURE',
      /target_modules.*lookaround/,
    )
    await expectLoraError(() => parseLoraConfig(peftConfig({ rank_pattern: { '(q)\\1': 4 } })), 'UNSUPPORTED_FEATURE', /rank_pattern key/)
  })

  it('exclude_modules and all-linear', () => {
    expect(target({ exclude_modules: ['layers.0.self_attn.q_proj'] }, Q0)).toBe(false)
    expect(target({ exclude_modules: '.*layers\\.0.*' }, Q0)).toBe(false)
    expect(target({ exclude_modules: '.*layers\\.0.*' }, Q1)).toBe(true)
    expect(target({ target_modules: 'all-linear' }, 'model.layers.0.mlp.up_proj')).toBe(true)
  })
})

describe('unsupported features -> UNSUPPORTED_FEATURE naming the feature', () => {
  const w = makeWeights(toyModules(8))
  const zeros = (n: number): Float32Array => new Float32Array(n)
  const cases: [string, Record<string, unknown>, Uint8Array, RegExp][] = [
    ['use_dora', { use_dora: true }, w, /use_dora/],
    ['lora_bias', { lora_bias: true }, w, /lora_bias/],
    ['peft_type IA3', { peft_type: 'IA3' }, w, /peft_type "IA3"/],
    ['target_parameters', { target_parameters: ['experts.gate_up_proj'] }, w, /target_parameters/],
    ['layer_replication', { layer_replication: [[0, 2]] }, w, /layer_replication/],
    [
      'DoRA magnitude key',
      {},
      makeWeights(toyModules(8), 1, { [`base_model.model.${Q0}.lora_magnitude_vector`]: { dtype: 'F32', shape: [12], data: zeros(12) } }),
      /use_dora/,
    ],
    [
      'lora_B bias key',
      {},
      makeWeights(toyModules(8), 1, { [`base_model.model.${Q0}.lora_B.bias`]: { dtype: 'F32', shape: [12], data: zeros(12) } }),
      /lora_bias/,
    ],
    [
      'saved modules_to_save',
      { modules_to_save: ['lm_head'] },
      makeWeights(toyModules(8), 1, { 'base_model.model.lm_head.weight': { dtype: 'F32', shape: [2, 2], data: zeros(4) } }),
      /modules_to_save/,
    ],
    [
      'other non-LoRA key',
      {},
      makeWeights(toyModules(8), 1, { 'base_model.model.model.norm.weight': { dtype: 'F32', shape: [4], data: zeros(4) } }),
      /model\.norm\.weight" is not a LoRA weight/,
    ],
    [
      'conv LoRA',
      { target_modules: ['conv'] },
      writeSafetensors({
        'base_model.model.conv.lora_A.weight': { dtype: 'F32', shape: [8, 3, 1, 1], data: zeros(24) },
        'base_model.model.conv.lora_B.weight': { dtype: 'F32', shape: [4, 8, 1, 1], data: zeros(32) },
      }),
      /convolution/,
    ],
  ]
  for (const [name, extra, weights, message] of cases) {
    it(name, () => expectLoraError(() => parseAdapter(peftConfig(extra), weights, 'x'), 'UNSUPPORTED_FEATURE', message))
  }
})

describe('bad configs and weights -> INVALID_FILE naming the file and the field', () => {
  const w = makeWeights(toyModules(8))
  const cases: [string, unknown, RegExp][] = [
    ['not JSON', '{"r": ', /adapter_config\.json: not valid JSON/],
    ['an array', [], /must be a JSON object/],
    ['missing r', peftConfig({ r: undefined }), /r must be an integer/],
    ['r as a string', peftConfig({ r: '8' }), /r must be an integer.*"8"/],
    ['r = 0', peftConfig({ r: 0 }), /r must be an integer/],
    ['absurd r', peftConfig({ r: 1e9 }), /r must be an integer in 1\.\.65536/],
    ['missing lora_alpha', peftConfig({ lora_alpha: undefined }), /lora_alpha/],
    ['use_rslora not boolean', peftConfig({ use_rslora: 'yes' }), /use_rslora must be a boolean/],
    ['target_modules a number', peftConfig({ target_modules: 5 }), /target_modules/],
    ['bad regex', peftConfig({ target_modules: '(q_proj' }), /target_modules.*not a valid regular expression/],
    ['rank_pattern value 0', peftConfig({ rank_pattern: { q_proj: 0 } }), /rank_pattern\["q_proj"\]/],
    ['alpha_pattern string', peftConfig({ alpha_pattern: { q_proj: 'x' } }), /alpha_pattern\["q_proj"\]/],
    ['layers_to_transform strings', peftConfig({ layers_to_transform: ['1'] }), /layers_to_transform/],
  ]
  for (const [name, config, message] of cases) {
    it(name, () => expectLoraError(() => parseAdapter(config, w, 'x'), 'INVALID_FILE', message))
  }

  it('lora_A without lora_B', () => {
    const f = writeSafetensors({ [`base_model.model.${Q0}.lora_A.weight`]: { dtype: 'F32', shape: [8, 12], data: new Float32Array(96) } })
    return expectLoraError(() => parseAdapter(peftConfig(), f, 'x'), 'INVALID_FILE', /q_proj" has lora_A\.weight but no lora_B\.weight/)
  })

  it('A and B ranks that disagree', () => {
    const f = writeSafetensors({
      [`base_model.model.${Q0}.lora_A.weight`]: { dtype: 'F32', shape: [8, 12], data: new Float32Array(96) },
      [`base_model.model.${Q0}.lora_B.weight`]: { dtype: 'F32', shape: [12, 4], data: new Float32Array(48) },
    })
    return expectLoraError(() => parseAdapter(peftConfig(), f, 'x'), 'INVALID_FILE', /lora_B \[12, 4\]/)
  })

  it('a NaN weight', () => {
    const data = new Float32Array(96)
    data[5] = NaN
    const f = writeSafetensors({
      [`base_model.model.${Q0}.lora_A.weight`]: { dtype: 'F32', shape: [8, 12], data },
      [`base_model.model.${Q0}.lora_B.weight`]: { dtype: 'F32', shape: [12, 8], data: new Float32Array(96) },
    })
    return expectLoraError(() => parseAdapter(peftConfig(), f, 'x'), 'INVALID_FILE', /lora_A has a non-finite value NaN at index 5/)
  })

  it('the same tensor in two shards', () =>
    expectLoraError(() => parseAdapter(peftConfig(), [w, w], 'x'), 'INVALID_FILE', /also appears in/))

  it('no targeted module at all', () =>
    expectLoraError(() => parseAdapter(peftConfig({ target_modules: ['o_proj'] }), w, 'x'), 'INVALID_FILE', /no LoRA weights/))

  it('a malformed weight file names the adapter and file', () =>
    expectLoraError(
      () => parseAdapter(peftConfig(), w.subarray(0, 30), 'bad'),
      'INVALID_FILE',
      /adapter "bad" adapter_model\.safetensors: /,
    ))
})

describe('embedding LoRA and base-layer weights', () => {
  const E = 'base_model.model.model.embed_tokens'
  const f32 = (shape: number[], v = 0.25) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape[0] * shape[1]).fill(v) })
  const cfg = peftConfig({ target_modules: ['q_proj', 'v_proj', 'embed_tokens'] })

  it('lora_embedding_A [r, vocab] / _B [dim, r] make an embedding module; base_layer.weight is kept, not applied', () => {
    const w = makeWeights(toyModules(8), 1, {
      [`${E}.lora_embedding_A`]: f32([8, 50]),
      [`${E}.lora_embedding_B`]: f32([12, 8]),
      [`${E}.base_layer.weight`]: f32([50, 12], 3),
    })
    const a = parseAdapter(cfg, w, 'x')
    expect(a.modules.get('model.embed_tokens')).toMatchObject({ rank: 8, inFeatures: 50, outFeatures: 12, embedding: true })
    expect(a.modules.get('model.layers.0.self_attn.q_proj')!.embedding).toBeUndefined()
    expect(a.baseWeights.get('model.embed_tokens')).toEqual({ shape: [50, 12], data: new Float32Array(600).fill(3) })
    expect(a.bytes).toBe(parseAdapter(peftConfig(), makeWeights(toyModules(8)), 'y').bytes + (8 * 50 + 12 * 8) * 4)
  })

  it('a half pair, a mixed pair, or a base weight of no LoRA module is INVALID_FILE', async () => {
    await expectLoraError(
      () => parseAdapter(cfg, makeWeights(toyModules(8), 1, { [`${E}.lora_embedding_A`]: f32([8, 50]) }), 'x'),
      'INVALID_FILE',
      ['lora_embedding_A but no lora_embedding_B'],
    )
    await expectLoraError(
      () =>
        parseAdapter(
          cfg,
          makeWeights(toyModules(8), 1, { [`${E}.lora_embedding_A`]: f32([8, 50]), [`${E}.lora_B.weight`]: f32([12, 8]) }),
          'x',
        ),
      'INVALID_FILE',
      ['both'],
    )
    await expectLoraError(
      () => parseAdapter(cfg, makeWeights(toyModules(8), 1, { 'base_model.model.lm_head.base_layer.weight': f32([50, 12]) }), 'x'),
      'INVALID_FILE',
      ['lm_head.base_layer.weight', 'no module'],
    )
    await expectLoraError(
      () =>
        parseAdapter(
          cfg,
          makeWeights(toyModules(8), 1, { [`${E}.lora_embedding_A`]: f32([4, 50]), [`${E}.lora_embedding_B`]: f32([12, 4]) }),
          'x',
        ),
      'INVALID_FILE',
      ['model.embed_tokens', 'rank 8'],
    )
  })
})
