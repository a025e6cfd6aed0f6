import { InMemoryRegistry } from '../../../hypervisor-sim/lending/InMemoryRegistry.js';
import { registryContract } from './RegistryContract.js';

// The embedded registry against the shared DeviceRegistry contract.
describe('lending registry (in-memory)', () => {
  registryContract({
    create: async (opts) => new InMemoryRegistry(opts),
    denseRevisions: true,
  });
});
