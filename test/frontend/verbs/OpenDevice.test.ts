/**
 * openDevice picks the attachment and loads its transport's provider with a dynamic import;
 * configuration mistakes are PV_ERR_CONFIG errors that name what is wrong.
 */

import assert from 'node:assert/strict';
import { loadProviderFactory, PROVIDER_MODULES } from '../../../frontend/verbs/ProviderLoader.js';
import { openDevice } from '../../../frontend/verbs/Verbs.js';
import type { DeviceAttachment } from '../../../protocol/Pci.js';
import { domId } from '../../../protocol/Types.js';
import { fakeEnv } from './helpers/fakeEnv.js';

describe('verbs: openDevice configuration errors', () => {
  it('no rdma-nic attached → PV_ERR_CONFIG', async () => {
    const env = fakeEnv(domId(3), { devices: [{ device: 'ssd0', kind: 'nvme', transport: 'native' }] });
    await assert.rejects(openDevice(env), (e: { code?: string; message: string }) => {
      return e.code === 'PV_ERR_CONFIG' && /no rdma-nic/.test(e.message);
    });
    await assert.rejects(openDevice(env, 'nic9'), { code: 'PV_ERR_CONFIG', message: /nic9/ });
    await assert.rejects(openDevice(env, 'ssd0'), { code: 'PV_ERR_CONFIG', message: /not an rdma-nic/ });
  });

  it('an unknown transport → PV_ERR_CONFIG naming it', async () => {
    const att = { device: 'nic0', kind: 'rdma-nic', transport: 'carrier-pigeon' } as unknown as DeviceAttachment;
    const env = fakeEnv(domId(3), { devices: [att] });
    await assert.rejects(openDevice(env), { code: 'PV_ERR_CONFIG', message: /carrier-pigeon/ });
  });

  it('a transport whose provider module is missing → PV_ERR_CONFIG naming the transport', async () => {
    await assert.rejects(loadProviderFactory('warp', { warp: './warp/WarpProvider.js' }), {
      code: 'PV_ERR_CONFIG',
      message: /'warp'.*not built/,
    });
  });

  it('a module without createProvider → PV_ERR_CONFIG', async () => {
    // Objects.js is a real module of the verbs folder that exports no createProvider.
    await assert.rejects(loadProviderFactory('odd', { odd: './Objects.js' }), {
      code: 'PV_ERR_CONFIG',
      message: /exports no createProvider/,
    });
  });

  it('native and passthrough load the same native provider module', async () => {
    assert.equal(PROVIDER_MODULES.native, PROVIDER_MODULES.passthrough);
    const f = await loadProviderFactory('passthrough');
    assert.equal(typeof f, 'function');
  });

  it('the native provider refuses an attachment without a PCI function (PV_ERR_CONFIG)', async () => {
    const env = fakeEnv(domId(3), { devices: [{ device: 'nic0', kind: 'rdma-nic', transport: 'passthrough' }] });
    await assert.rejects(openDevice(env), { code: 'PV_ERR_CONFIG', message: /no PCI function/ });
  });
});
