import { LoraError } from '../errors.js'
import { writeChunked } from './buffers.js'

/**
 * GPU-resident x and y for a call that runs on the CPU: read them back, and write y again after.
 * Used when the dispatcher predicts the CPU far faster than the GPU for a GPU-resident call.
 */

/** Copy the first `floats` values of `src` (needs COPY_SRC usage) to a new Float32Array. */
export async function readBack(
  device: GPUDevice,
  src: GPUBuffer,
  floats: number,
  name: string,
  track: <T>(p: Promise<T>) => Promise<T> = (p) => p,
): Promise<Float32Array> {
  if (!(src.usage & GPUBufferUsage.COPY_SRC)) {
    throw new LoraError('INVALID_ARGUMENT', `${name}: a GPUBuffer read back to the host needs COPY_SRC usage (usage ${src.usage})`)
  }
  const bytes = floats * 4
  const staging = device.createBuffer({
    size: Math.max(4, bytes),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: `readback ${name}`,
  })
  try {
    // a buffer of another device, or destroyed, fails validation: an error, not zeros read back
    device.pushErrorScope('validation')
    const enc = device.createCommandEncoder({ label: `readback ${name}` })
    if (bytes > 0) enc.copyBufferToBuffer(src, 0, staging, 0, bytes)
    device.queue.submit([enc.finish()])
    const invalid = await track(device.popErrorScope())
    if (invalid) throw new LoraError('INVALID_ARGUMENT', `${name}: the GPUBuffer cannot be read on rt.device: ${invalid.message}`)
    await track(staging.mapAsync(GPUMapMode.READ))
    return new Float32Array(staging.getMappedRange(0, bytes).slice(0))
  } catch (cause) {
    if (cause instanceof LoraError) throw cause
    throw new LoraError('DEVICE_LOST', `${name}: reading the GPUBuffer back failed: ${String(cause)}`, { cause })
  } finally {
    staging.destroy()
  }
}

/** Write y back into its GPUBuffer (needs COPY_DST usage), in queue order. */
export function writeBack(device: GPUDevice, dst: GPUBuffer, values: Float32Array): void {
  writeChunked(device.queue, dst, values, values.length)
}

/** Check a y buffer can take the CPU path before anything is read. */
export function checkWritable(y: GPUBuffer): void {
  if (!(y.usage & GPUBufferUsage.COPY_DST) || !(y.usage & GPUBufferUsage.COPY_SRC)) {
    throw new LoraError('INVALID_ARGUMENT', `y: a GPUBuffer run on the CPU needs COPY_SRC and COPY_DST usage (usage ${y.usage})`)
  }
}
