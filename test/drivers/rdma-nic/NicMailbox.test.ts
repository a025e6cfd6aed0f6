/**
 * The command mailbox (NicRegs.ts): arguments, opcode, doorbell, status. A non-zero status
 * becomes the catalogue error with that status (`errorFromCode(codeFromStatus(status))`), and
 * every argument word is written each time so a stale word of an earlier command cannot leak.
 *
 * The BAR here is a small typed register file that answers commands with a scripted status:
 * the point is the driver's side of the mailbox, not a device (the end-to-end tests use the
 * real RnicDevice).
 */

import assert from 'node:assert/strict';
import { RdmaNicDriver } from '../../../drivers/rdma-nic/RdmaNicDriver.js';
import { SharedArrayGuestMemory } from '../../../hypervisor-sim/memory/SharedArrayGuestMemory.js';
import { ERROR_CATALOGUE, type ErrorCode, PvError, RdmaError } from '../../../protocol/errors.js';
import type { MmioRegion, PciFunction } from '../../../protocol/Pci.js';
import { NIC_CMD_WORDS, NIC_VERSION, NicCmd, NicReg, nicBarSize } from '../../../protocol/rdma/NicRegs.js';
import { Access } from '../../../protocol/rdma/Verbs.js';
import { domId, type GuestPhysAddr, type Iova } from '../../../protocol/Types.js';

/** A register file that records each executed command and answers with `nextStatus`. */
class ScriptedBar implements MmioRegion {
  readonly size = nicBarSize(16);
  readonly regs = new Int32Array(this.size / 4);
  readonly executed: Array<{ op: number; args: number[] }> = [];
  nextStatus = 0;
  nextOut: number[] = [];

  constructor(version = NIC_VERSION) {
    this.regs[NicReg.VERSION / 4] = version;
    this.regs[NicReg.PORT_ID / 4] = 9;
    this.regs[NicReg.MAX_QP / 4] = 16;
    this.regs[NicReg.MAX_CQ / 4] = 16;
    this.regs[NicReg.MAX_MR / 4] = 16;
    this.regs[NicReg.MAX_QP_WR / 4] = 256;
    this.regs[NicReg.MAX_CQE / 4] = 1024;
  }

  read32(offset: number): number {
    return this.regs[offset >> 2];
  }

  write32(offset: number, value: number): void {
    this.regs[offset >> 2] = value;
    if (offset !== NicReg.CMD_DOORBELL) return;
    const args = Array.from(this.regs.subarray(NicReg.CMD_IN / 4, NicReg.CMD_IN / 4 + NIC_CMD_WORDS));
    this.executed.push({ op: this.regs[NicReg.CMD_OPCODE / 4], args });
    this.regs[NicReg.CMD_STATUS / 4] = this.nextStatus;
    this.nextOut.forEach((v, i) => {
      this.regs[NicReg.CMD_OUT / 4 + i] = v;
    });
  }
}

function attach(bar: ScriptedBar, kind: PciFunction['kind'] = 'rdma-nic') {
  const mem = SharedArrayGuestMemory.create(domId(1), 64 * 4096);
  const pci: PciFunction = {
    name: 'nic0',
    kind,
    bdf: '0000:03:00.0',
    bars: [bar],
    dmaAddr: (gpa: GuestPhysAddr) => gpa as number as Iova,
  };
  return { mem, pci };
}

describe('rnic driver: command status → typed error', () => {
  const rdmaCodes = (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).filter((c) => ERROR_CATALOGUE[c].area === 'rdma');

  for (const code of rdmaCodes) {
    it(`status ${ERROR_CATALOGUE[code].status} becomes ${code} (an RdmaError naming the command)`, () => {
      const bar = new ScriptedBar();
      const { mem, pci } = attach(bar);
      const drv = new RdmaNicDriver(pci, mem);
      bar.nextStatus = ERROR_CATALOGUE[code].status;
      assert.throws(
        () => drv.allocPd(),
        (err: unknown) =>
          err instanceof RdmaError &&
          err.code === code &&
          /CREATE_PD/.test(err.message) &&
          err.status === bar.nextStatus,
      );
    });
  }

  it('a status outside the catalogue becomes PV_ERR_BAD_REQUEST', () => {
    const bar = new ScriptedBar();
    const { mem, pci } = attach(bar);
    const drv = new RdmaNicDriver(pci, mem);
    bar.nextStatus = -9999;
    assert.throws(() => drv.allocPd(), { code: 'PV_ERR_BAD_REQUEST' });
  });

  it('status 0 returns the results from CMD_OUT', () => {
    const bar = new ScriptedBar();
    const { mem, pci } = attach(bar);
    const drv = new RdmaNicDriver(pci, mem);
    bar.nextOut = [3, 0x1234, 0x5678];
    assert.deepEqual(drv.regMr(1, 4096, 4096, Access.LOCAL_WRITE), { index: 3, lkey: 0x1234, rkey: 0x5678 });
  });
});

describe('rnic driver: mailbox writes every argument word', () => {
  it('CREATE_MR after a wider command leaves no stale argument behind (unused words are 0)', () => {
    const bar = new ScriptedBar();
    const { mem, pci } = attach(bar);
    const drv = new RdmaNicDriver(pci, mem);
    // Fill every CMD_IN word with garbage, as a previous command could have.
    for (let i = 0; i < NIC_CMD_WORDS; i++) bar.regs[NicReg.CMD_IN / 4 + i] = -1;
    drv.regMr(5, 2 ** 33 + 4096, 8192, Access.LOCAL_WRITE | Access.REMOTE_READ, (2 ** 34) as Iova);
    const { op, args } = bar.executed[bar.executed.length - 1];
    assert.equal(op, NicCmd.CREATE_MR);
    assert.deepEqual(args.slice(0, 7), [5, 4096, 2, 8192, Access.LOCAL_WRITE | Access.REMOTE_READ, 0, 4]);
    assert.ok(
      args.slice(7).every((w) => w === 0),
      'unused words must be zero',
    );
  });
});

describe('rnic driver: attach checks', () => {
  it('refuses a function that is not an rdma-nic (PV_ERR_CONFIG)', () => {
    const { mem, pci } = attach(new ScriptedBar(), 'nvme');
    assert.throws(() => new RdmaNicDriver(pci, mem), { code: 'PV_ERR_CONFIG' });
  });

  it('refuses another major version (PV_ERR_NOT_SUPPORTED)', () => {
    const { mem, pci } = attach(new ScriptedBar(NIC_VERSION + 0x1_0000));
    assert.throws(() => new RdmaNicDriver(pci, mem), { code: 'PV_ERR_NOT_SUPPORTED' });
  });

  it('reads caps and the port id', () => {
    const { mem, pci } = attach(new ScriptedBar());
    const drv = new RdmaNicDriver(pci, mem);
    assert.equal(drv.portId, 9);
    assert.equal(drv.caps.maxQp, 16);
    assert.equal(drv.caps.maxCqe, 1024);
  });

  it('an MR outside the domain memory is refused before any command (PV_ERR_RDMA_BAD_MEMORY)', () => {
    const bar = new ScriptedBar();
    const { mem, pci } = attach(bar);
    const drv = new RdmaNicDriver(pci, mem);
    assert.throws(
      () => drv.regMr(1, mem.size - 4096, 8192, 0),
      (e: unknown) => e instanceof PvError && e.code === 'PV_ERR_RDMA_BAD_MEMORY',
    );
    assert.equal(bar.executed.length, 0);
  });
});
