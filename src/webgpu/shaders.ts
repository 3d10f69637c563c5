import { LoraError } from '../errors.js'
import { importNode } from '../platform.js'
import type { WeightDtype } from '../types.js'

/** Names of the WGSL files in shaders/ (one entry point `main` each). */
export type ShaderName =
  | 'shrink'
  | 'shrink_tile'
  | 'shrink_gemm'
  | 'fused_tile'
  | 'expand'
  | 'expand_vec4'
  | 'expand_tile'
  | 'expand_gemm'
  | 'expand_multi'
  | 'weigh'
  | 'fold'
  | 'gather'
export const SHADER_NAMES: readonly ShaderName[] = [
  'shrink',
  'shrink_tile',
  'shrink_gemm',
  'fused_tile',
  'expand',
  'expand_vec4',
  'expand_tile',
  'expand_gemm',
  'expand_multi',
  'weigh',
  'fold',
  'gather',
]

/** How weights are stored: f32 pairs, native f16 pairs (shader-f16), or two 16-bit values per u32. */
export type WeightStorage = 'f32' | 'f16' | 'f16-packed' | 'bf16-packed'

export function weightStorage(dtype: WeightDtype, hasF16: boolean): WeightStorage {
  if (dtype === 'f32') return 'f32'
  if (dtype === 'bf16') return 'bf16-packed'
  return hasF16 ? 'f16' : 'f16-packed'
}

/**
 * The one string substitution: WGSL cannot choose a binding's element type by an override, so the
 * `//@weights` line becomes binding 2 plus `load2(i)`: weights i and i+1 (i even) as f32.
 */
const WEIGHT_SNIPPETS: Record<WeightStorage, string> = {
  f32: `@group(0) @binding(2) var<storage, read> w: array<vec2<f32>>;
fn load2(i: u32) -> vec2<f32> { return w[i >> 1u]; }`,
  f16: `@group(0) @binding(2) var<storage, read> w: array<vec2<f16>>;
fn load2(i: u32) -> vec2<f32> { return vec2<f32>(w[i >> 1u]); }`,
  'f16-packed': `@group(0) @binding(2) var<storage, read> w: array<u32>;
fn load2(i: u32) -> vec2<f32> { return unpack2x16float(w[i >> 1u]); }`,
  // bf16 is the top half of an f32: shift the low value up, mask the high one
  'bf16-packed': `@group(0) @binding(2) var<storage, read> w: array<u32>;
fn load2(i: u32) -> vec2<f32> { let v = w[i >> 1u]; return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u)); }`,
}

/**
 * The `//@weights4` line (shaders whose weight offsets are multiples of 4): binding 2 as one 16-byte
 * (f32) or 8-byte (16-bit) element per 4 weights, and `load4(i)`: weights i..i+3 (i % 4 == 0) as f32.
 */
const WEIGHT4_SNIPPETS: Record<WeightStorage, string> = {
  f32: `@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
fn load4(i: u32) -> vec4<f32> { return w[i >> 2u]; }`,
  f16: `@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
fn load4(i: u32) -> vec4<f32> { return vec4<f32>(w[i >> 2u]); }`,
  'f16-packed': `@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;
fn load4(i: u32) -> vec4<f32> { let v = w[i >> 2u]; return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)); }`,
  'bf16-packed': `@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;
fn load4(i: u32) -> vec4<f32> {
  let v = w[i >> 2u];
  return vec4<f32>(bitcast<f32>(v.x << 16u), bitcast<f32>(v.x & 0xffff0000u), bitcast<f32>(v.y << 16u), bitcast<f32>(v.y & 0xffff0000u));
}`,
}

/**
 * The `//@weightsB` and `//@weightsB4` lines (the B of the expand kernels and fused_tile.wgsl, bound
 * beside A in one bind group): the `//@weights` and `//@weights4` bindings as binding 6, named `wb`,
 * read with `loadB2(i)` and `loadB4(i)`.
 */
function weightsB(snippet: string): string {
  return snippet
    .replace('@binding(2)', '@binding(6)')
    .replace(/\bw\b/g, 'wb')
    .replace('fn load4', 'fn loadB4')
    .replace('fn load2', 'fn loadB2')
}

/**
 * The `//@subgroups` line and the `/*@lanes*\/` mark of `main`'s parameters (shrink_tile.wgsl,
 * fused_tile.wgsl): with subgroups, the lane and subgroup size builtins, `down(v, d)` (the value of
 * the lane d further down) and `lanesLow(...)`: SG where every subgroup of the workgroup is SG lanes
 * in the order of local_invocation_index (lane = lid % SG), else 1 (a workgroup-uniform value: the
 * kernels then use workgroup memory for every step). Without them, stand-ins that make lanesLow 1.
 */
const LANES_ON = `var<workgroup> lanesOff: atomic<u32>;
fn down(v: f32, d: u32) -> f32 { return subgroupShuffleDown(v, d); }
fn lanesLow(lid: u32, lane: u32, size: u32) -> u32 {
  if (SG == 0u) { return 1u; }
  if (size != SG || lane != lid % max(SG, 1u)) { atomicStore(&lanesOff, 1u); } // (a constant divisor of 0 would not compile)
  return select(SG, 1u, workgroupUniformLoad(&lanesOff) != 0u);
}`
const LANES_OFF = `const sgLane = 0u;
const sgSize = 0u;
fn down(v: f32, d: u32) -> f32 { return v; }
fn lanesLow(lid: u32, lane: u32, size: u32) -> u32 { return 1u; }`
const LANE_BUILTINS = ', @builtin(subgroup_invocation_id) sgLane: u32, @builtin(subgroup_size) sgSize: u32'

/** WGSL source with the shared params struct, the weight storage and the subgroup helpers substituted. */
export function specialise(source: string, storage: WeightStorage, params: string, subgroups = false): string {
  const body = source
    .replace(/^\/\/@subgroups$/m, subgroups ? LANES_ON : LANES_OFF)
    .replace('/*@lanes*/', subgroups ? LANE_BUILTINS : '')
    .replace(/^\/\/@params.*$/m, params)
    .replace(/^\/\/@weightsB4$/m, weightsB(WEIGHT4_SNIPPETS[storage]))
    .replace(/^\/\/@weightsB$/m, weightsB(WEIGHT_SNIPPETS[storage]))
    .replace(/^\/\/@weights4$/m, WEIGHT4_SNIPPETS[storage])
    .replace(/^\/\/@weights$/m, WEIGHT_SNIPPETS[storage])
  return `${storage === 'f16' ? 'enable f16;\n' : ''}${subgroups ? 'enable subgroups;\n' : ''}${body}`
}

/** Read every shader file: fs in Node, fetch elsewhere (files sit in shaders/ at the package root). */
export async function loadShaderSources(): Promise<Record<ShaderName | 'params', string>> {
  const out = {} as Record<ShaderName | 'params', string>
  const isNode = typeof process !== 'undefined' && !!process.versions?.node
  for (const name of [...SHADER_NAMES, 'params' as const]) {
    const url = new URL(`../../shaders/${name}.wgsl`, import.meta.url)
    try {
      if (isNode && url.protocol === 'file:') {
        const { readFile } = (await importNode('node:fs/promises')) as typeof import('node:fs/promises')
        out[name] = await readFile(url, 'utf8')
      } else {
        const res = await fetch(url)
        if (!res.ok) throw new Error(`HTTP ${res.status}`)
        out[name] = await res.text()
      }
    } catch (cause) {
      throw new LoraError('BACKEND_UNAVAILABLE', `shader ${url.href} could not be read`, { cause })
    }
  }
  return out
}
