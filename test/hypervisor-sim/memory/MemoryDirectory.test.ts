import assert from 'node:assert/strict';
import { MemoryDirectory } from '../../../hypervisor-sim/memory/MemoryDirectory.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { type DomId, PAGE_SIZE } from '../../../protocol/Types.js';

const DOM1 = 1 as DomId;

/** Asserts that `fn` throws a pvio error with `code`. */
function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => (err as { code?: string }).code === code);
}

describe('MemoryDirectory', () => {
  it('require throws PV_ERR_NO_DOMAIN for an unknown domain; add/remove round-trip', () => {
    const dir = new MemoryDirectory();
    throwsCode(() => dir.require(DOM1), 'PV_ERR_NO_DOMAIN');
    const buffer = new SharedArrayBuffer(PAGE_SIZE);
    const mem = dir.add(DOM1, buffer);
    assert.equal(dir.require(DOM1), mem);
    assert.equal(dir.add(DOM1, buffer), mem, 'adding the same buffer again is a no-op');
    throwsCode(() => dir.add(DOM1, new SharedArrayBuffer(PAGE_SIZE)), 'PV_ERR_INVALID_ARG');
    assert.equal(dir.remove(DOM1), true);
    assert.equal(dir.get(DOM1), undefined);
    assert.equal(dir.remove(DOM1), false);
  });

  it('addMemory shares one instance with the domain and refuses a different memory for the same domid', () => {
    const dir = new MemoryDirectory();
    const own = SharedArrayGuestMemory.create(DOM1, PAGE_SIZE);
    assert.equal(dir.addMemory(own), own);
    assert.equal(dir.add(DOM1, own.buffer), own);
    throwsCode(() => dir.addMemory(SharedArrayGuestMemory.create(DOM1, PAGE_SIZE)), 'PV_ERR_INVALID_ARG');
    assert.deepEqual(dir.domains(), [DOM1]);
    assert.equal(dir.has(DOM1), true);
  });
});
