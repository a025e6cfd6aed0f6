/**
 * Guest program of `pvio reg-mr-bench`: opens its one RDMA device over whatever transport the
 * scenario gave it (the same program for every transport), and for each size times `iters`
 * registrations and deregistrations of one buffer (ibv_reg_mr / ibv_dereg_mr with local and
 * remote access, so every transport maps the pages for the NIC), after `warmup` untimed pairs.
 * Returns the samples in µs; the runner summarizes them.
 */

import * as ibv from '../../frontend/verbs/index.js';
import type { DomainEnv } from '../../protocol/Program.js';
import { Access } from '../../protocol/rdma/Verbs.js';

/** Arguments from the runner. */
export interface RegMrGuestArgs {
  readonly sizes: readonly number[];
  readonly iters: number;
  readonly warmup: number;
}

/** Samples of one size, µs. */
export interface RegMrSamples {
  readonly size: number;
  readonly reg: number[];
  readonly dereg: number[];
}

/** What the guest returns. */
export interface RegMrGuestResult {
  readonly transport: string;
  readonly sizes: RegMrSamples[];
}

const ACCESS = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ;

export default async function main(env: DomainEnv): Promise<RegMrGuestResult> {
  const a = env.args as unknown as RegMrGuestArgs;
  const ctx = await ibv.openDevice(env);
  try {
    const pd = ibv.allocPd(ctx);
    const out: RegMrSamples[] = [];
    for (const size of a.sizes) {
      const buf = ctx.allocBuffer(size);
      const reg: number[] = [];
      const dereg: number[] = [];
      for (let i = 0; i < a.warmup + a.iters; i++) {
        const t0 = performance.now();
        const mr = ibv.regMr(pd, buf, size, ACCESS);
        const t1 = performance.now();
        ibv.deregMr(mr);
        const t2 = performance.now();
        if (i >= a.warmup) {
          reg.push((t1 - t0) * 1000);
          dereg.push((t2 - t1) * 1000);
        }
      }
      ctx.freeBuffer(buf);
      out.push({ size, reg, dereg });
    }
    ibv.deallocPd(pd);
    return { transport: ctx.transport, sizes: out };
  } finally {
    await ibv.closeDevice(ctx);
  }
}
