/**
 * `pvio reg-mr-bench`: the control path the two split-driver designs differ in most. Registering
 * memory costs, per transport, what its design makes it cost:
 *  - native / passthrough: the NIC driver pins and maps the pages (the IOMMU in translate mode for
 *    passthrough) — the floor;
 *  - paravirt: the guest grants every page and writes the refs into indirect pages; dom0 maps the
 *    indirect pages, copies the refs out, grant-maps every page for the NIC (one grant-table
 *    lookup and IOMMU insertion per page), then registers;
 *  - virtio: the guest sends an address and a length; dom0 maps the range for the NIC through its
 *    privileged foreign map (the IOMMU insertion per page remains, the per-page grant does not).
 * One scenario per transport runs the same guest program (RegMrGuest.ts); every figure is
 * measured in this run and shown beside the native floor of the same size.
 *
 *   pvio reg-mr-bench [--transports native,paravirt,virtio] [--sizes 4096,1048576,16777216] [-n 50] [--json]
 */

import { parseArgs } from 'node:util';
import { runScenario } from '../../hypervisor-sim/scenario/Scenario.js';
import { type ScenarioSpec, TRANSPORTS } from '../../hypervisor-sim/scenario/ScenarioSpec.js';
import { pvError } from '../../protocol/errors.js';
import type { Transport } from '../../protocol/Pci.js';
import { PAGE_SIZE } from '../../protocol/Types.js';
import { Progress } from '../compare/Progress.js';
import { type Summary, summarize } from '../stats/Summary.js';
import type { RegMrGuestResult } from './RegMrGuest.js';

const GUEST = new URL('./RegMrGuest.js', import.meta.url);

/** Transports the bench accepts: every scenario transport but tcp (no memory registration with a device). */
export const REGMR_TRANSPORTS: readonly Transport[] = TRANSPORTS.filter((t) => t !== 'tcp');

/** One row: a transport and size, with its registration and deregistration times (µs). */
export interface RegMrRow {
  readonly transport: Transport;
  readonly size: number;
  readonly reg: Summary;
  readonly dereg: Summary;
}

/** Options of a run. */
export interface RegMrOptions {
  readonly transports: readonly Transport[];
  readonly sizes: readonly number[];
  readonly iters: number;
  readonly warmup?: number;
  readonly progress?: Progress;
}

/** Runs one scenario per transport; returns a row per transport and size. */
export async function runRegMrBench(o: RegMrOptions): Promise<RegMrRow[]> {
  const rows: RegMrRow[] = [];
  const biggest = Math.max(...o.sizes);
  for (const transport of o.transports) {
    o.progress?.start(`reg_mr over ${transport}`);
    const spec: ScenarioSpec = {
      host: { nics: 1 },
      guests: [
        {
          name: 'guest',
          program: GUEST,
          memoryMiB: Math.ceil(biggest / 2 ** 20) + 32,
          devices: [{ device: 'nic0', transport }],
          args: { sizes: o.sizes, iters: o.iters, warmup: o.warmup ?? 5 },
        },
      ],
    };
    const r = await runScenario(spec);
    const g = r.guests.guest.value as RegMrGuestResult;
    for (const s of g.sizes) rows.push({ transport, size: s.size, reg: summarize(s.reg), dereg: summarize(s.dereg) });
    o.progress?.done(`reg_mr over ${transport}`, `${g.sizes.length} sizes`);
  }
  return rows;
}

const fmt = (x: number | undefined, w: number): string =>
  (x === undefined || !Number.isFinite(x) ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(2)).padStart(w);

/** The table: per size, every transport's median reg and dereg, per page, and × the native floor. */
export function formatRegMr(rows: readonly RegMrRow[]): string {
  const out = ['', 'Memory registration, µs (median of the samples; ibv_reg_mr then ibv_dereg_mr of one buffer)'];
  const sizes = [...new Set(rows.map((r) => r.size))];
  for (const size of sizes) {
    const pages = Math.ceil(size / PAGE_SIZE);
    out.push(`  ${size >= 2 ** 20 ? `${size / 2 ** 20} MiB` : `${size / 1024} KiB`} (${pages} pages):`);
    out.push(
      `  ${'transport'.padEnd(16)}${'reg'.padStart(10)}${'p99'.padStart(10)}${'dereg'.padStart(10)}${'reg/page'.padStart(10)}${'×native'.padStart(9)}`,
    );
    const floor = rows.find((r) => r.size === size && r.transport === 'native')?.reg.median;
    for (const r of rows) {
      if (r.size !== size) continue;
      out.push(
        `  ${r.transport.padEnd(16)}${fmt(r.reg.median, 10)}${fmt(r.reg.p99, 10)}${fmt(r.dereg.median, 10)}` +
          `${fmt(r.reg.median / pages, 10)}${fmt(floor === undefined ? undefined : r.reg.median / floor, 9)}`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}

const sizeOf = (s: string): number => {
  const m = /^(\d+)([KkMm]?)$/.exec(s.trim());
  if (!m) throw pvError('PV_ERR_INVALID_ARG', `--sizes: '${s}' is not a size (e.g. 4096, 64K, 16M)`);
  const n = Number(m[1]) * (m[2] === '' ? 1 : m[2].toLowerCase() === 'k' ? 1024 : 2 ** 20);
  if (n < 1 || n > 256 * 2 ** 20) throw pvError('PV_ERR_INVALID_ARG', `--sizes: ${s} is outside 1 B … 256 MiB`);
  return n;
};

/** The CLI entry point. */
export async function regMrMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      transports: { type: 'string', default: 'native,paravirt,virtio' },
      sizes: { type: 'string', default: '4096,1M,16M' },
      iters: { type: 'string', short: 'n', default: '50' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const transports = (values.transports as string).split(',').map((t) => t.trim()) as Transport[];
  for (const t of transports) {
    if (!REGMR_TRANSPORTS.includes(t)) {
      throw pvError('PV_ERR_INVALID_ARG', `--transports: '${t}' (choose from ${REGMR_TRANSPORTS.join(', ')})`);
    }
  }
  const iters = Number(values.iters);
  if (!Number.isInteger(iters) || iters < 1 || iters > 100_000) {
    throw pvError('PV_ERR_INVALID_ARG', `-n: ${values.iters} is not a count in 1 … 100000`);
  }
  const sizes = (values.sizes as string).split(',').map(sizeOf);
  const progress = new Progress(transports.length);
  const rows = await runRegMrBench({ transports, sizes, iters, progress });
  progress.finish();
  process.stdout.write(values.json ? `${JSON.stringify(rows, null, 2)}\n` : formatRegMr(rows));
}
