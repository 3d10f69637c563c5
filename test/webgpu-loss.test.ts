// LossWatch (src/webgpu/device.ts): every GPU wait races the device's loss. Checked on a stand-in
// for GPUDevice (only its `lost` promise is used), so that loss can be triggered at will.
import { describe, expect, it } from 'vitest'
import { LossWatch } from '../src/webgpu/device.js'
import { expectLoraError } from './compare.js'

function fakeDevice(): { device: GPUDevice; lose: (message: string) => void } {
  let lose: (message: string) => void = () => {}
  const lost = new Promise<GPUDeviceLostInfo>(
    (resolve) => (lose = (message) => resolve({ reason: 'destroyed', message } as GPUDeviceLostInfo)),
  )
  return { device: { lost } as unknown as GPUDevice, lose }
}

describe('LossWatch', () => {
  it('a settled guard leaves nothing behind (no reaction per call on the device-lost promise)', async () => {
    const { device } = fakeDevice()
    const watch = new LossWatch(device)
    for (let i = 0; i < 1000; i++) expect(await watch.guard(Promise.resolve(i), 'call')).toBe(i)
    await expectLoraError(() => watch.guard(Promise.reject(new Error('boom')), 'failing call'), 'GPU_ERROR', ['failing call', 'boom'])
    expect(watch.waitingGuards).toBe(0)
  })

  it('a guard waiting when the device is lost rejects with DEVICE_LOST; later guards at once', async () => {
    const { device, lose } = fakeDevice()
    const watch = new LossWatch(device)
    const never = new Promise<number>(() => {})
    const waiting = watch.guard(never, 'readback of y')
    expect(watch.waitingGuards).toBe(1)
    lose('destroyed by the test')
    await expectLoraError(() => waiting, 'DEVICE_LOST', ['readback of y', 'destroyed by the test'])
    expect(watch.lost).toBe(true)
    expect(watch.waitingGuards).toBe(0)
    await expectLoraError(() => watch.guard(never, 'next call'), 'DEVICE_LOST', ['next call'])
    expect(() => watch.check()).toThrow(/lost/)
  })
})
