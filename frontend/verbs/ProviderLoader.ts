/**
 * Which module implements each transport, loaded on demand with a dynamic import: a program
 * that runs over tcp never loads the NIC driver, and a transport whose provider is not built
 * fails with a configuration error naming it rather than at startup.
 */

import { fileURLToPath } from 'node:url';
import { pvError } from '../../protocol/errors.js';
import type { CreateProvider } from './Provider.js';

/** Transport → provider module, relative to this file. Each module exports `createProvider`. */
export const PROVIDER_MODULES: Readonly<Record<string, string>> = {
  native: './native/NativeProvider.js',
  passthrough: './native/NativeProvider.js',
  paravirt: './paravirt/ParavirtProvider.js',
  'paravirt-copy': './paravirt/ParavirtProvider.js',
  virtio: './virtio/VirtioProvider.js',
  'virtio-packed': './virtio/VirtioProvider.js',
  tcp: './tcp/TcpProvider.js',
};

/**
 * Loads the `createProvider` of `transport` from `modules` (a table like PROVIDER_MODULES;
 * tests pass their own). An unknown transport, a module that is not there, or one without a
 * `createProvider` function → PV_ERR_CONFIG naming the transport. Any other failure while
 * loading (a bug in the module) is rethrown unchanged so its stack survives.
 */
export async function loadProviderFactory(
  transport: string,
  modules: Readonly<Record<string, string>> = PROVIDER_MODULES,
): Promise<CreateProvider> {
  const rel = Object.hasOwn(modules, transport) ? modules[transport] : undefined;
  if (rel === undefined) {
    throw pvError('PV_ERR_CONFIG', `unknown RDMA transport '${transport}' (known: ${Object.keys(modules).join(', ')})`);
  }
  const url = new URL(rel, import.meta.url);
  let mod: { createProvider?: unknown };
  try {
    mod = (await import(url.href)) as { createProvider?: unknown };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // Only the provider module itself being absent is a configuration problem; a module that
    // is present but fails to load is a bug whose error must surface as it is.
    if (code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(fileURLToPath(url))) {
      throw pvError('PV_ERR_CONFIG', `no provider for RDMA transport '${transport}': ${rel} is not built`);
    }
    throw err;
  }
  if (typeof mod.createProvider !== 'function') {
    throw pvError('PV_ERR_CONFIG', `provider module ${rel} of transport '${transport}' exports no createProvider()`);
  }
  return mod.createProvider as CreateProvider;
}
