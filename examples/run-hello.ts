/**
 * Runs examples/HelloRdma.ts in two guests over one transport and prints what they printed:
 *
 *   pvio hello --transport paravirt
 *   pvio hello --transport tcp
 */

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runScenario } from '../hypervisor-sim/scenario/Scenario.js';
import { TRANSPORTS } from '../hypervisor-sim/scenario/ScenarioSpec.js';
import { pvError } from '../protocol/errors.js';
import type { Transport } from '../protocol/Pci.js';

/** Runs the example over one transport and prints what both guests printed. */
export async function helloMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { transport: { type: 'string', default: 'paravirt' } } });
  const transport = values.transport as Transport;
  if (!TRANSPORTS.includes(transport)) {
    throw pvError('PV_ERR_CONFIG', `unknown transport '${transport}': use one of ${TRANSPORTS.join(', ')}`);
  }
  const program = new URL('./HelloRdma.js', import.meta.url);
  const device = (i: number) => (transport === 'tcp' ? 'tcp0' : `nic${i}`);
  const r = await runScenario({
    guests: [
      { name: 'server', program, devices: [{ device: device(0), transport }] },
      { name: 'client', program, devices: [{ device: device(1), transport }] },
    ],
  });
  for (const name of ['server', 'client']) {
    for (const line of r.guests[name].console) process.stdout.write(`${line}\n`);
  }
  const ok = Object.values(r.guests).every((g) => (g.value as { verified: boolean }).verified);
  process.stdout.write(`${ok ? 'verified' : 'MISMATCH'} over ${transport}\n`);
  if (!ok) throw pvError('PV_ERR_BAD_REQUEST', `the guests disagree over ${transport}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await helloMain(process.argv.slice(2));
}
