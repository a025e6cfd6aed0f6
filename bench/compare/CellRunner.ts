/**
 * Runs cell plans of `pvio compare` / `pvio reproduce` in a piscina pool of workers (CellWorker),
 * `concurrency` at a time (1 by default: a cell owns the machine while it measures).
 */

import { Piscina } from 'piscina';
import type { FabricProfileName } from '../../hypervisor-sim/pcie/Profiles.js';
import { pvError } from '../../protocol/errors.js';
import type { CellOutcome, CellTask } from './CellWorker.js';
import { type CellPlan, formatSize } from './Matrix.js';
import type { Progress } from './Progress.js';
import type { CellResult, StageBreakdown } from './Results.js';

const WORKER = new URL('./CellWorker.js', import.meta.url);

/** The one-line result a plain log prints for a finished cell. */
function brief(c: CellResult | StageBreakdown): string {
  if (c.error) return `FAILED ${c.error.code}: ${c.error.message}`;
  if ('nsPerMsg' in c) return `instrumented, ${c.messages} messages`;
  if (c.lat) return `median ${c.lat.usec.median.toFixed(2)} µs, p99 ${c.lat.usec.p99.toFixed(2)} µs`;
  if (c.bw) return `${c.bw.avgMiBps.toFixed(0)} MiB/s, ${c.bw.mpps.toFixed(3)} Mpps`;
  return 'done';
}

const label = (p: CellPlan, instrument: boolean) =>
  `${p.transport} ${p.op} ${p.kind} ${formatSize(p.size)}${instrument ? ' (stages)' : ''}`;

/**
 * Runs cell plans in a piscina pool, `concurrency` at a time, feeding the pool itself so the
 * progress line names the cell really running.
 */
export class CellRunner {
  private readonly _pool: Piscina;

  constructor(
    private readonly _concurrency: number,
    private readonly _deviceEngine: 'inline' | 'dedicated',
    private readonly _spinBudget: number | undefined,
    private readonly _progress: Progress,
    private readonly _fabric: FabricProfileName = 'ideal',
  ) {
    this._pool = new Piscina({
      filename: WORKER.href,
      minThreads: 1,
      maxThreads: _concurrency,
      atomics: 'disabled',
      idleTimeout: 5_000,
    });
  }

  /** Measuring runs. */
  async cells(plans: readonly CellPlan[]): Promise<CellResult[]> {
    return this._run(plans, false, (o) => ('cell' in o ? o.cell : undefined));
  }

  /** Instrumented runs (stage ledgers on). */
  async breakdowns(plans: readonly CellPlan[]): Promise<StageBreakdown[]> {
    return this._run(plans, true, (o) => ('breakdown' in o ? o.breakdown : undefined));
  }

  async close(): Promise<void> {
    await this._pool.destroy();
  }

  private async _run<T extends CellResult | StageBreakdown>(
    plans: readonly CellPlan[],
    instrument: boolean,
    pick: (o: CellOutcome) => T | undefined,
  ): Promise<T[]> {
    const results: T[] = new Array(plans.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < plans.length) {
        const i = next++;
        const p = plans[i];
        const name = label(p, instrument);
        this._progress.start(name);
        const task: CellTask = {
          plan: p,
          instrument,
          deviceEngine: this._deviceEngine,
          spinBudget: this._spinBudget,
          fabric: this._fabric,
        };
        const value = pick((await this._pool.run(task)) as CellOutcome);
        if (value === undefined)
          throw pvError('PV_ERR_BAD_REQUEST', `cell worker returned the wrong kind of result for ${name}`);
        results[i] = value;
        this._progress.done(name, brief(value));
      }
    };
    await Promise.all(Array.from({ length: Math.min(this._concurrency, plans.length) }, worker));
    return results;
  }
}
