/**
 * Test program: reports the devices it was given — each attachment's name, transport and, for
 * an owned function, its BDF and the VERSION and PORT_ID registers read through BAR 0. With
 * `args.hold` it publishes that report under `data/devices` and idles until killed.
 */

import type { DomainEnv } from '../../../../protocol/Program.js';
import { NicReg } from '../../../../protocol/rdma/NicRegs.js';
import { guestPhysAddr } from '../../../../protocol/Types.js';

/** One attachment as the program saw it. */
export interface SeenDevice {
  readonly device: string;
  readonly transport: string;
  readonly bdf?: string;
  readonly version?: number;
  readonly portId?: number;
  readonly dmaOf4096?: number;
}

export default async function main(env: DomainEnv): Promise<SeenDevice[]> {
  const seen: SeenDevice[] = env.devices.map((d) => {
    if (d.pci === undefined) return { device: d.device, transport: d.transport };
    const bar = d.pci.bars[0];
    return {
      device: d.device,
      transport: d.transport,
      bdf: d.pci.bdf,
      version: bar.read32(NicReg.VERSION),
      portId: bar.read32(NicReg.PORT_ID),
      dmaOf4096: d.pci.dmaAddr(guestPhysAddr(4096)),
    };
  });
  if (env.args.hold !== true) return seen;
  const dir = `/local/domain/${env.domid}/data`;
  await env.hypercalls.store.write(`${dir}/devices`, JSON.stringify(seen));
  return new Promise<never>(() => setInterval(() => {}, 1 << 30));
}
