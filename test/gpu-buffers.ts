/** GPU buffers for tests: filled at creation, and read back. */

/** A buffer holding `values`, `padBytes` larger (filled at creation, so it needs no COPY_DST usage). */
export function upload(device: GPUDevice, values: Float32Array | Int32Array, usage: number, padBytes = 0): GPUBuffer {
  const b = device.createBuffer({ size: values.byteLength + padBytes, usage, mappedAtCreation: true })
  new Uint8Array(b.getMappedRange()).set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
  b.unmap()
  return b
}

/** The whole buffer (needs COPY_SRC usage) as f32 values. */
export async function download(device: GPUDevice, b: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: b.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
  const enc = device.createCommandEncoder()
  enc.copyBufferToBuffer(b, 0, staging, 0, b.size)
  device.queue.submit([enc.finish()])
  await staging.mapAsync(GPUMapMode.READ)
  const out = new Float32Array(staging.getMappedRange().slice(0))
  staging.destroy()
  return out
}
