/**
 * Runs examples/HelloRdma.ts in two guests over one transport and prints what they printed:
 *
 *   node dist/examples/run-hello.js --transport paravirt
 *   node dist/examples/run-hello.js --transport tcp
 */

import { parseArgs } from 'node:util';
import { runScenario } from '../hypervisor-sim/scenario/Scenario.js';
import { TRANSPORTS } from '../hypervisor-sim/scenario/ScenarioSpec.js';
import type { Transport } from '../protocol/Pci.js';

const { values } = parseArgs({ options: { transport: { type: 'string', default: 'paravirt' } } });
const transport = values.transport as Transport;
if (!TRANSPORTS.includes(transport)) {
  process.stderr.write(`unknown transport '${transport}': use one of ${TRANSPORTS.join(', ')}\n`);
  process.exit(2);
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
process.exitCode = ok ? 0 : 1;
