/**
 * adapter_config.json as PEFT (0.21) applies it to a LoRA adapter. Semantics follow PEFT's
 * `check_target_module_exists` (tuners_utils.py) and `get_pattern_key` (utils/other.py); read
 * for semantics, not copied.
 */
import { RE2JS } from 're2js'
import { LoraError } from '../errors.js'

/** The parts of a PEFT LoRA config that change how the saved weights are applied. */
export interface LoraConfig {
  r: number
  loraAlpha: number
  useRslora: boolean
  /** Pattern (a regex matched against the end of the module path) -> rank, in file order. */
  rankPattern: Map<string, number>
  /** Pattern -> alpha, in file order. */
  alphaPattern: Map<string, number>
  /** A regex (full match), a list of names (exact or '.'-suffix), or null / 'all-linear' = every module in the file. */
  targetModules: string | string[] | null
  excludeModules: string | string[] | null
  /** Accepted but does not change the LoRA weights' layout (see parseLoraConfig). */
  fanInFanOut: boolean
  layersToTransform: number | number[] | null
  layersPattern: string[] | null
  modulesToSave: string[] | null
}

/** Ranks above this are rejected as absurd (no published LoRA comes near it). */
export const MAX_RANK = 1 << 16

/**
 * Config fields whose non-default value changes the math beyond plain LoRA: each one is refused
 * with 'UNSUPPORTED_FEATURE' rather than silently giving different outputs from PEFT.
 */
const UNSUPPORTED: [field: string, isUsed: (v: unknown) => boolean][] = [
  ['use_dora', (v) => v === true],
  ['lora_bias', (v) => v === true],
  ['use_qalora', (v) => v === true],
  ['use_bdlora', (v) => v != null && v !== false],
  ['alora_invocation_tokens', (v) => v != null],
  ['layer_replication', (v) => v != null],
  ['trainable_token_indices', (v) => v != null],
  ['arrow_config', (v) => v != null],
  ['target_parameters', (v) => v != null && !(Array.isArray(v) && v.length === 0)],
]

function bad(file: string, what: string): LoraError {
  return new LoraError('INVALID_FILE', `${file}: ${what}`)
}

/** What config.ts needs of a compiled pattern (RE2JS objects have the same test / exec). */
interface Pattern {
  test(input: string): boolean
  exec(input: string): ArrayLike<string> | null
}

/**
 * Compile a PEFT (Python) regex. The patterns come from adapter_config.json, that is from whoever
 * made the adapter, so they run on RE2 (re2js: linear time in the module path, whatever the
 * pattern): a pattern like (a+)+$ cannot make loading hang, as it would with backtracking.
 * RE2 reads Python's syntax, named groups (?P<n>...) included; it has no lookaround or
 * backreferences, and a pattern using them is UNSUPPORTED_FEATURE.
 */
function compile(pattern: string, file: string, field: string, wrap: (p: string) => string): Pattern {
  const source = wrap(pattern)
  try {
    return RE2JS.compile(source)
  } catch (e) {
    let valid = true
    try {
      new RegExp(source.replace(/\(\?P</g, '(?<'))
    } catch {
      valid = false
    }
    if (!valid) throw bad(file, `${field}: ${JSON.stringify(pattern)} is not a valid regular expression (${(e as Error).message})`)
    throw new LoraError(
      'UNSUPPORTED_FEATURE',
      `${file}: ${field}: ${JSON.stringify(pattern)} uses lookaround or a backreference, which the linear-time regex engine used for adapter configs does not run (${(e as Error).message}); list the module names instead`,
    )
  }
}

const compiled = new WeakMap<LoraConfig, Map<string, Pattern>>()
function regex(config: LoraConfig, key: string, wrap: (p: string) => string): Pattern {
  let cache = compiled.get(config)
  if (!cache) compiled.set(config, (cache = new Map()))
  const id = wrap(key)
  let re = cache.get(id)
  if (!re) cache.set(id, (re = compile(key, 'adapter_config.json', 'pattern', wrap)))
  return re
}

function readNumberMap(v: unknown, field: string, file: string, integer: boolean): Map<string, number> {
  const out = new Map<string, number>()
  if (v == null) return out
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(file, `${field} must be an object of numbers`)
  for (const [k, n] of Object.entries(v as Record<string, unknown>)) {
    const ok = integer
      ? Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= MAX_RANK
      : typeof n === 'number' && Number.isFinite(n)
    if (!ok)
      throw bad(file, `${field}["${k}"] must be ${integer ? `an integer in 1..${MAX_RANK}` : 'a finite number'}, got ${JSON.stringify(n)}`)
    compile(k, file, `${field} key`, (p) => p) // reject invalid regexes at parse time
    out.set(k, n as number)
  }
  return out
}

function readNames(v: unknown, field: string, file: string, allowString: boolean): string | string[] | null {
  if (v == null) return null
  if (typeof v === 'string' && allowString) {
    compile(v, file, field, (p) => p)
    return v
  }
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v.slice() as string[]
  throw bad(file, `${field} must be ${allowString ? 'a string or ' : ''}a list of strings, got ${JSON.stringify(v)?.slice(0, 60)}`)
}

/**
 * Validate an adapter_config.json (object or JSON text) and return its LoRA semantics.
 * Unused PEFT fields (dropout, init, task_type, ...) are ignored: they do not change inference.
 * `fan_in_fan_out` is accepted and changes nothing here: PEFT always stores lora_A as [r, in]
 * and lora_B as [out, r] (nn.Linear layouts); the flag only transposes the merged delta to fit a
 * Conv1D base weight.
 * @throws LoraError 'INVALID_FILE' (bad JSON, wrong types, missing r/lora_alpha, absurd rank),
 *   'UNSUPPORTED_FEATURE' (DoRA, lora_bias, non-LoRA peft_type, ...).
 */
export function parseLoraConfig(input: unknown, file = 'adapter_config.json'): LoraConfig {
  let c: unknown = input
  if (typeof input === 'string') {
    try {
      c = JSON.parse(input)
    } catch (e) {
      throw bad(file, `not valid JSON (${(e as Error).message})`)
    }
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw bad(file, 'must be a JSON object')
  const o = c as Record<string, unknown>
  const get = (k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined)
  const peftType = get('peft_type')
  if (peftType != null && peftType !== 'LORA') {
    throw new LoraError('UNSUPPORTED_FEATURE', `${file}: peft_type ${JSON.stringify(peftType)} (only LORA adapters are supported)`)
  }
  for (const [field, isUsed] of UNSUPPORTED) {
    if (isUsed(get(field))) throw new LoraError('UNSUPPORTED_FEATURE', `${file}: ${field} = ${JSON.stringify(get(field))} is not supported`)
  }
  const r = get('r')
  if (!Number.isSafeInteger(r) || (r as number) < 1 || (r as number) > MAX_RANK) {
    throw bad(file, `r must be an integer in 1..${MAX_RANK}, got ${JSON.stringify(r)}`)
  }
  const alpha = get('lora_alpha')
  if (typeof alpha !== 'number' || !Number.isFinite(alpha))
    throw bad(file, `lora_alpha must be a finite number, got ${JSON.stringify(alpha)}`)
  for (const f of ['use_rslora', 'fan_in_fan_out'] as const) {
    const v = get(f)
    if (v != null && typeof v !== 'boolean') throw bad(file, `${f} must be a boolean, got ${JSON.stringify(v)}`)
  }
  const layers = get('layers_to_transform')
  if (layers != null && !Number.isSafeInteger(layers) && !(Array.isArray(layers) && layers.every((n) => Number.isSafeInteger(n)))) {
    throw bad(file, `layers_to_transform must be an integer or a list of integers, got ${JSON.stringify(layers)}`)
  }
  const pattern = readNames(get('layers_pattern'), 'layers_pattern', file, true)
  const target = readNames(get('target_modules'), 'target_modules', file, true)
  return {
    r: r as number,
    loraAlpha: alpha,
    useRslora: get('use_rslora') === true,
    rankPattern: readNumberMap(get('rank_pattern'), 'rank_pattern', file, true),
    alphaPattern: readNumberMap(get('alpha_pattern'), 'alpha_pattern', file, false),
    targetModules: target,
    excludeModules: readNames(get('exclude_modules'), 'exclude_modules', file, true),
    fanInFanOut: get('fan_in_fan_out') === true,
    layersToTransform: (layers ?? null) as number | number[] | null,
    layersPattern: typeof pattern === 'string' ? (pattern.length > 0 ? [pattern] : null) : pattern,
    modulesToSave: readNames(get('modules_to_save'), 'modules_to_save', file, false) as string[] | null,
  }
}

/**
 * PEFT's pattern lookup: the first key (in file order) such that the module path is the key,
 * or ends with '.' + key, the key being a regex. Returns undefined when none matches.
 */
export function findPatternKey(keys: Iterable<string>, config: LoraConfig, modulePath: string): string | undefined {
  for (const key of keys) {
    if (regex(config, key, (p) => `^(?:.*\\.)?(?:${p})$`).test(modulePath)) return key
  }
  return undefined
}

/** Rank, alpha and scale of one module: rank_pattern / alpha_pattern override r / lora_alpha. */
export function moduleScale(config: LoraConfig, modulePath: string): { rank: number; alpha: number; scale: number } {
  const rKey = findPatternKey(config.rankPattern.keys(), config, modulePath)
  const aKey = findPatternKey(config.alphaPattern.keys(), config, modulePath)
  const rank = rKey === undefined ? config.r : config.rankPattern.get(rKey)!
  const alpha = aKey === undefined ? config.loraAlpha : config.alphaPattern.get(aKey)!
  return { rank, alpha, scale: config.useRslora ? alpha / Math.sqrt(rank) : alpha / rank }
}

/**
 * Whether PEFT would wrap the module at `modulePath` with this config (exclude_modules,
 * modules_to_save, target_modules, layers_to_transform + layers_pattern). A null target list or
 * 'all-linear' targets every module (PEFT expands those before saving; we only see the file).
 */
export function isTargeted(config: LoraConfig, modulePath: string): boolean {
  const key = modulePath
  const ex = config.excludeModules
  if (ex) {
    if (typeof ex === 'string' ? regex(config, ex, (p) => `^(?:${p})$`).test(key) : ex.some((e) => key === e || key.endsWith(`.${e}`)))
      return false
  }
  if (config.modulesToSave?.some((m) => regex(config, m, (p) => `^(?:.*\\.)?${p}(?:$|\\..*)`).test(key))) return false
  const t = config.targetModules
  if (t === null || t === 'all-linear') return true
  if (typeof t === 'string') return regex(config, t, (p) => `^(?:${p})$`).test(key)
  // An exact name bypasses layers_to_transform, as in PEFT.
  if (t.includes(key)) return true
  if (!t.some((name) => key.endsWith(`.${name}`))) return false
  const layers = config.layersToTransform
  if (layers === null || (Array.isArray(layers) && layers.length === 0)) return true
  let index: number | undefined
  const patterns = config.layersPattern
  if (patterns === null || patterns.length === 0) {
    // Lazy: the first numbered segment is the layer index (not an expert index deeper down).
    const m = /^.*?\.[^.]*\.(\d+)\./.exec(key)
    if (m) index = Number(m[1])
  } else {
    for (const p of patterns) {
      const m = regex(config, p, (q) => `^.*?\\.${q}\\.(\\d+)\\.`).exec(key)
      if (m) {
        index = Number(m[1])
        break
      }
    }
  }
  if (index === undefined) return false
  return typeof layers === 'number' ? index === layers : layers.includes(index)
}
