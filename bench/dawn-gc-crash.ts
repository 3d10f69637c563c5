/**
 * Repro of the intermittent Dawn crash noted in DESIGN.md (SIGSEGV, or abort
 * "std::system_error: Invalid argument" from the futex, inside Dawn's event processing while
 * awaiting mapAsync). Trigger: the GPU object returned by `create()` is garbage-collected while
 * a device made from it still has work or a map pending. Forcing GC makes it deterministic:
 *
 *   XDG_RUNTIME_DIR=/tmp node --expose-gc --import tsx bench/dawn-gc-crash.ts drop   # crashes (rc 134 or 139)
 *   XDG_RUNTIME_DIR=/tmp node --expose-gc --import tsx bench/dawn-gc-crash.ts keep   # runs to the end
 *
 * Fix: keep the instance referenced as long as its devices live (src/webgpu/device.ts does).
 */
import { globals, create } from 'webgpu'
Object.assign(globalThis, globals)
const keep = process.argv[2] === 'keep'
let g: GPU | undefined = create([])
const adapter = (await g.requestAdapter())!
const device = await adapter.requestDevice()
if (!keep) g = undefined
const code = `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3<u32>) { var s = 0.0; for (var k = 0u; k < 20000u; k++) { s += f32(k) * a[i.x]; } a[i.x] = s; }`
const p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } })
const buf = device.createBuffer({ size: 4 * 65536, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC })
const rd = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
for (let i = 0; i < 5; i++) {
  // submit long work, map, collect garbage while the map is pending
  const enc = device.createCommandEncoder()
  const pass = enc.beginComputePass()
  pass.setPipeline(p)
  pass.setBindGroup(0, device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }))
  pass.dispatchWorkgroups(1024)
  pass.end()
  enc.copyBufferToBuffer(buf, 0, rd, 0, 16)
  device.queue.submit([enc.finish()])
  const m = rd.mapAsync(GPUMapMode.READ)
  ;(globalThis as { gc?: () => void }).gc?.()
  await new Promise((r) => setTimeout(r, 0))
  await m
  rd.unmap()
  console.log('iter', i)
}
device.destroy()
console.log('done')
