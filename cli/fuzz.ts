/**
 * `pvio fuzz`: drives a backend in this process with adversarial guests beside honest ones
 * (fuzz/core/FuzzRunner.ts) and reports cases, adversarial requests per second and every
 * distinct invariant violation with a reproducer seed. Exit status 1 when any invariant broke.
 *
 *   pvio fuzz --backend rdma|blk|virtq|all --seconds N [--seed S] [--cases N] [--json]
 *
 * The blk target lives in fuzz/blk/BlkTarget.ts and is loaded on demand, so this command works
 * (for rdma) before that module exists. The virtq target (fuzz/virtq/VirtqTarget.ts) drives the
 * virtio device side (backend/virtio) with a hostile driver beside an honest one.
 */

import { type FuzzReport, formatReport, runFuzz } from '../fuzz/core/FuzzRunner.js';
import type { FuzzTarget } from '../fuzz/core/FuzzTarget.js';
import { pvError } from '../protocol/errors.js';

interface FuzzArgs {
  backends: string[];
  seconds: number | undefined;
  cases: number | undefined;
  seed: number;
  json: boolean;
}

/** A usage error: pvio.ts prints the code, this message and the usage line. */
function usageError(msg: string): Error {
  return pvError('PV_ERR_INVALID_ARG', msg);
}

function intArg(name: string, v: string | undefined, min: number, max: number): number {
  if (v === undefined) throw usageError(`${name} needs a value`);
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw usageError(`${name} must be an integer in [${min}, ${max}], got '${v}'`);
  return n;
}

/** Parses the command line (exported for tests). */
export function parseFuzzArgs(argv: readonly string[]): FuzzArgs {
  const out: FuzzArgs = { backends: [], seconds: undefined, cases: undefined, seed: Date.now() >>> 0, json: false };
  let backend: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--backend':
        backend = value();
        break;
      case '--seconds':
        out.seconds = intArg('--seconds', value(), 1, 86_400);
        break;
      case '--cases':
        out.cases = intArg('--cases', value(), 1, 2 ** 31 - 1);
        break;
      case '--seed':
        out.seed = intArg('--seed', value(), 0, 2 ** 32 - 1);
        break;
      case '--json':
        out.json = true;
        break;
      default:
        throw usageError(`unknown option '${a}'`);
    }
  }
  if (backend === undefined)
    throw usageError('say which backend to fuzz: --backend rdma, --backend blk, --backend virtq or --backend all');
  if (backend === 'all') out.backends = ['rdma', 'blk', 'virtq'];
  else if (backend === 'rdma' || backend === 'blk' || backend === 'virtq') out.backends = [backend];
  else throw usageError(`--backend must be rdma, blk, virtq or all, got '${backend}'`);
  if (out.seconds === undefined && out.cases === undefined) {
    throw usageError('give a budget: --seconds N (per backend) and/or --cases N');
  }
  return out;
}

/** Builds the target of `name`; the blk one is optional until fuzz/blk exists. */
async function loadTarget(name: string): Promise<FuzzTarget> {
  if (name === 'rdma') return new (await import('../fuzz/rdma/RdmaTarget.js')).RdmaTarget();
  if (name === 'virtq') return new (await import('../fuzz/virtq/VirtqTarget.js')).VirtqTarget();
  let mod: { BlkTarget?: new () => FuzzTarget };
  try {
    // A computed specifier: the module is another part of the fuzzer that may not be built yet.
    const spec = '../fuzz/blk/BlkTarget.js';
    mod = (await import(spec)) as typeof mod;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND') throw pvError('PV_ERR_NOT_SUPPORTED', '--backend blk: not available yet');
    throw err;
  }
  if (mod.BlkTarget === undefined) throw pvError('PV_ERR_NOT_SUPPORTED', '--backend blk: not available yet');
  return new mod.BlkTarget();
}

/** The command. */
export async function fuzzMain(argv: string[]): Promise<void> {
  const args = parseFuzzArgs(argv);
  const reports: FuzzReport[] = [];
  for (const name of args.backends) {
    const target = await loadTarget(name);
    const report = await runFuzz(target, {
      seed: args.seed,
      seconds: args.seconds,
      cases: args.cases,
      // On a terminal one status line redrawn in place each second; in a log, quiet (the report
      // follows at the end).
      progress: process.stderr.isTTY ? (line) => process.stderr.write(`\r\x1b[2K${line}`) : undefined,
    });
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
    reports.push(report);
    if (!args.json) process.stdout.write(`${formatReport(report)}\n`);
  }
  const requests = reports.reduce((s, r) => s + r.requests, 0);
  const violations = reports.reduce((s, r) => s + r.violations, 0);
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ reports, requests, violations }, null, 2)}\n`);
  } else if (reports.length > 1) {
    process.stdout.write(`total: ${requests} adversarial requests, ${violations} invariant violations\n`);
  }
  // pvio.ts sets the exit code from the command's outcome after we return; a run that found
  // violations completed fine as a command but must still exit 1 (for CI), hence at exit.
  if (violations > 0) process.once('exit', () => (process.exitCode = 1));
}
