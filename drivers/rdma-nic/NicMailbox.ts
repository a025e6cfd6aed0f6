/**
 * The NIC's command mailbox (NicRegs.ts): the driver writes every CMD_IN word (unused ones
 * zero, as the contract requires, so a stale argument of the previous command never leaks into
 * this one), the opcode, then 1 to CMD_DOORBELL; the device executes the command before the
 * doorbell write returns, and CMD_STATUS holds 0 or a catalogue status. This is PVRDMA's single
 * command slot (reference §3.1) without the response interrupt: the simulated device answers
 * synchronously, so there is nothing to wait for.
 */

import { codeFromStatus, errorFromCode } from '../../protocol/errors.js';
import type { MmioRegion } from '../../protocol/Pci.js';
import { NIC_CMD_WORDS, type NicCmd, NicReg } from '../../protocol/rdma/NicRegs.js';

const CMD_NAMES = [
  '',
  'QUERY_PORT',
  'CREATE_PD',
  'DESTROY_PD',
  'CREATE_MR',
  'DESTROY_MR',
  'CREATE_CQ',
  'DESTROY_CQ',
  'CREATE_QP',
  'MODIFY_QP',
  'QUERY_QP',
  'DESTROY_QP',
];

/** Name of a command opcode, for error messages. */
export function nicCmdName(op: number): string {
  return CMD_NAMES[op] || `CMD_${op}`;
}

/** One command at a time through BAR 0's mailbox. */
export class NicMailbox {
  /** Arguments of the next command: fill, then `exec`. Zeroed by `begin`. */
  readonly args = new Int32Array(NIC_CMD_WORDS);
  /** Commands executed (for stats: each is an MMIO exit on a real VM). */
  commands = 0;
  private readonly _bar: MmioRegion;

  constructor(bar: MmioRegion) {
    this._bar = bar;
  }

  /** Clears the argument words and returns them for filling. */
  begin(): Int32Array {
    this.args.fill(0);
    return this.args;
  }

  /**
   * Executes `op` with the arguments in `args`. Throws the catalogue error the device reported
   * (its class and code, with the command named in the message); returns nothing on success —
   * read results with `out(i)`.
   */
  exec(op: NicCmd): void {
    const bar = this._bar;
    const args = this.args;
    for (let i = 0; i < NIC_CMD_WORDS; i++) bar.write32(NicReg.CMD_IN + i * 4, args[i]);
    bar.write32(NicReg.CMD_OPCODE, op);
    bar.write32(NicReg.CMD_DOORBELL, 1);
    this.commands++;
    const status = bar.read32(NicReg.CMD_STATUS) | 0;
    if (status !== 0) {
      // A positive status is not a catalogue status: codeFromStatus maps it to PV_ERR_BAD_REQUEST.
      const code = codeFromStatus(status) ?? 'PV_ERR_BAD_REQUEST';
      throw errorFromCode(code, `NIC ${nicCmdName(op)} failed with status ${status} (${code})`);
    }
  }

  /** Result word `i` of the last command, as an unsigned 32-bit number. */
  out(i: number): number {
    return this._bar.read32(NicReg.CMD_OUT + i * 4) >>> 0;
  }
}
