#!/usr/bin/env node
/**
 * The `pvio` command. Each subcommand lives in its own module and is loaded on demand, so
 * `pvio --help` starts fast and a broken benchmark cannot break the others.
 */

import { readFileSync } from 'node:fs';

interface Command {
  readonly summary: string;
  readonly usage: string;
  run(argv: string[]): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  compare: {
    summary: 'the headline: every transport side by side (perftest-style cells, ratios, CPU, stages, plots, report)',
    usage:
      'pvio compare [--quick] [--cluster [--registry etcd://HOST:PORT --hosts A,B]] [--transports native,passthrough,paravirt,paravirt-copy,virtio,virtio-packed,tcp,lent,lent-passthrough] [--ops write,read,send,blk-randread,blk-seqread] [--kinds lat,bw] [--sizes 64,4096,...] [--lat-iters N] [--bw-mib N] [--concurrency N] [--device-engine inline|dedicated] [--fabric ideal|pcie3-x8-ntb] [--spin-us N] [--out DIR] [--no-breakdown] [--no-report] [--no-scale] [--no-reg-mr]',
    run: async (argv) => (await import('../bench/compare/Compare.js')).compareMain(argv),
  },
  host: {
    summary: 'run one host of a multi-machine cluster (etcd registry, TCP host links, lending, cross-host RDMA)',
    usage:
      'pvio host --name A --listen HOST:PORT --registry etcd://HOST:PORT [--peers B,C] [--advertise HOST] [--cluster NAME] [--ttl SECS] [--lend nvme0] [--nvme-mib N]',
    run: async (argv) => (await import('./host.js')).hostMain(argv),
  },
  cluster: {
    summary:
      'a 2–3 host cluster on this machine in one command (private etcd + pvio host processes); --check runs a smoke test',
    usage: 'pvio cluster [--hosts 2|3] [--ttl SECS] [--check] [--quiet]',
    run: async (argv) => (await import('./cluster.js')).clusterMain(argv),
  },
  ctl: {
    summary: 'send one control request to a running pvio host and print the JSON answer',
    usage: 'pvio ctl HOST:PORT status|borrow|return|blk-check|ping-peer|shutdown [JSON-ARGS]',
    run: async (argv) => (await import('./cluster.js')).ctlMain(argv),
  },
  reproduce: {
    summary: "re-run the seed papers' headline experiments: published figure beside pvio's, ratio shapes",
    usage: 'pvio reproduce [--lat-iters N]',
    run: async (argv) => (await import('../bench/compare/Reproduce.js')).reproduceMain(argv),
  },
  quick: {
    summary: '64 B RDMA WRITE latency and 4 MiB bandwidth per transport, beside in-run floors',
    usage:
      'pvio quick [--lat-iters N] [--bw-iters N] [--transports native,passthrough,paravirt,paravirt-copy,virtio,virtio-packed,tcp]',
    run: async (argv) => (await import('../bench/rdma-quick.bench.js')).quickMain(argv),
  },
  hello: {
    summary: 'run the HelloRdma example guest pair over one transport',
    usage: 'pvio hello [--transport paravirt|paravirt-copy|virtio|virtio-packed|passthrough|native|tcp]',
    run: async (argv) => (await import('../examples/run-hello.js')).helloMain(argv),
  },
  write_lat: {
    summary: 'ib_write_lat work-alike: RDMA WRITE ping-pong latency, perftest output and JSON',
    usage:
      'pvio write_lat [-s SIZE | -a] [-n ITERS | -D SECS [-f MARGIN]] [-H] [--mode paravirt,paravirt-copy,virtio,virtio-packed,passthrough,native,tcp] [--spin-us N] [--output=latency] [--out_json [--out_json_file F]]',
    run: async (argv) => (await import('../bench/perftest/PerftestCommand.js')).perftestMain('write_lat', argv),
  },
  write_bw: {
    summary: 'ib_write_bw work-alike: RDMA WRITE bandwidth, perftest output and JSON',
    usage:
      'pvio write_bw [-s SIZE | -a] [-n ITERS | -D SECS [-f MARGIN]] [-t TX_DEPTH] [-Q CQ_MOD] [--report_gbits] [--mode M,...] [--spin-us N] [--output=bandwidth|message_rate] [--out_json [--out_json_file F]]',
    run: async (argv) => (await import('../bench/perftest/PerftestCommand.js')).perftestMain('write_bw', argv),
  },
  read_lat: {
    summary: 'ib_read_lat work-alike: RDMA READ round-trip latency, perftest output and JSON',
    usage:
      'pvio read_lat [-s SIZE | -a] [-n ITERS | -D SECS [-f MARGIN]] [-H] [--mode M,...] [--spin-us N] [--output=latency] [--out_json [--out_json_file F]]',
    run: async (argv) => (await import('../bench/perftest/PerftestCommand.js')).perftestMain('read_lat', argv),
  },
  read_bw: {
    summary: 'ib_read_bw work-alike: RDMA READ bandwidth, perftest output and JSON',
    usage:
      'pvio read_bw [-s SIZE | -a] [-n ITERS | -D SECS [-f MARGIN]] [-t TX_DEPTH] [-Q CQ_MOD] [--report_gbits] [--mode M,...] [--spin-us N] [--output=bandwidth|message_rate] [--out_json [--out_json_file F]]',
    run: async (argv) => (await import('../bench/perftest/PerftestCommand.js')).perftestMain('read_bw', argv),
  },
  send_lat: {
    summary: 'ib_send_lat work-alike: SEND/RECV ping-pong latency, perftest output and JSON',
    usage:
      'pvio send_lat [-s SIZE | -a] [-n ITERS | -D SECS [-f MARGIN]] [-H] [-I INLINE] [--mode M,...] [--spin-us N] [--output=latency] [--out_json [--out_json_file F]]',
    run: async (argv) => (await import('../bench/perftest/PerftestCommand.js')).perftestMain('send_lat', argv),
  },
  send_bw: {
    summary: 'ib_send_bw work-alike: SEND/RECV bandwidth (512 receives kept posted), perftest output and JSON',
    usage:
      'pvio send_bw [-s SIZE | -a] [-n ITERS | -D SECS [-f MARGIN]] [-t TX_DEPTH] [-Q CQ_MOD] [--report_gbits] [--mode M,...] [--spin-us N] [--output=bandwidth|message_rate] [--out_json [--out_json_file F]]',
    run: async (argv) => (await import('../bench/perftest/PerftestCommand.js')).perftestMain('send_bw', argv),
  },
  blk_lat: {
    summary: 'fio-like 4 KiB random read/write latency (clat percentiles) over paravirt, passthrough and native NVMe',
    usage:
      'pvio blk_lat [--rw randread|randwrite] [--bs 4k] [-n ITERS | --runtime SECS] [--mode paravirt,passthrough,native] [--size 64m] [--backing-file PATH] [--placement local|lent] [--fabric ideal|pcie3-x8-ntb] [--no-prefill] [--spin-us N] [--json]',
    run: async (argv) => (await import('../bench/blk/BlkCommand.js')).blkMain('blk_lat', argv),
  },
  blk_bw: {
    summary:
      'fio-like 128 KiB sequential read/write bandwidth with --iodepth over paravirt, passthrough and native NVMe',
    usage:
      'pvio blk_bw [--rw read|write] [--bs 128k] [--iodepth 16] [-n ITERS | --runtime SECS] [--mode paravirt,passthrough,native] [--size 64m] [--backing-file PATH] [--placement local|lent] [--fabric ideal|pcie3-x8-ntb] [--no-prefill] [--spin-us N] [--json]',
    run: async (argv) => (await import('../bench/blk/BlkCommand.js')).blkMain('blk_bw', argv),
  },
  fuzz: {
    summary:
      'adversarial guests against a backend in one process: invariant checks, failure signatures, reproducer seeds',
    usage: 'pvio fuzz --backend rdma|blk|virtq|all --seconds N [--seed S] [--cases N] [--json]',
    run: async (argv) => (await import('./fuzz.js')).fuzzMain(argv),
  },
  'ring-bench': {
    summary: 'ring ping-pong and throughput over real Workers, beside in-run hand-off floors',
    usage: 'pvio ring-bench [--pingpong N] [--throughput N] [--spin POLLS] [--transports xen,split,packed] [--json]',
    run: async (argv) => (await import('../bench/ring.bench.js')).ringBenchMain(argv),
  },
  'reg-mr-bench': {
    summary: 'memory registration cost per transport (grants per page vs a guest-physical range), beside native',
    usage: 'pvio reg-mr-bench [--transports native,paravirt,virtio] [--sizes 4096,1M,16M] [-n ITERS] [--json]',
    run: async (argv) => (await import('../bench/regmr/RegMrBench.js')).regMrMain(argv),
  },
  fairness: {
    summary: "a neighbour's throughput beside a flooding guest (ring always full, event kicks) over alone, per backend",
    usage: 'pvio fairness [--backend rdma|blk] [--seconds N] [--repeat N] [--batch-limit N] [--json]',
    run: async (argv) => (await import('../bench/fairness/Fairness.js')).fairnessMain(argv),
  },
  top: {
    summary: 'live dashboard of a running pvio process (xentop): domains, rings, devices; keys q, s, d, ↑↓',
    usage:
      'pvio top [--pid N] [--interval MS] [--sort cpu|id|name|notify] [--once] [--frames N] [--demo [--seconds N]]',
    run: async (argv) => (await import('./top/TopCommand.js')).topMain(argv),
  },
  'bench-check': {
    summary: 'performance regression check: the issue-9 target ratios of a small compare run against a stored baseline',
    usage: 'pvio bench-check [--update] [--tolerance F] [--baseline FILE]   (npm run bench:check)',
    run: async (argv) => (await import('../bench/compare/BenchCheck.js')).benchCheckMain(argv),
  },
  console: {
    summary: "print a running domain's console screen (xl console); -f follows it",
    usage: 'pvio console <domain|id|host/domain> [-f] [--pid N] [--interval MS]',
    run: async (argv) => (await import('./console.js')).consoleMain(argv),
  },
};

/** Commands that run no host of their own, so nothing to watch. */
const UNMONITORED = new Set(['console', 'ctl', 'cluster', 'fuzz', 'ring-bench']);

/** Starts this process's monitor socket (MonitorServer.ts); a failure only costs `pvio top`. */
async function serveMonitor(cmd: string, argv: string[]): Promise<void> {
  try {
    const { MonitorServer } = await import('../hypervisor-sim/monitor/MonitorServer.js');
    const { processSource } = await import('../hypervisor-sim/monitor/ProcessSource.js');
    await MonitorServer.start(processSource(['pvio', cmd, ...argv].join(' ')));
  } catch (err) {
    process.stderr.write(`pvio: pvio top cannot watch this run: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function help(): string {
  const lines = ['usage: pvio <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS))
    lines.push(`  ${name.padEnd(14)}${c.summary}`, `  ${''.padEnd(14)}${c.usage}`);
  lines.push('', 'pvio --version    print the version', 'pvio --help       this text');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${help()}\n`);
    return 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write(`pvio ${version()}\n`);
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    process.stderr.write(`pvio: unknown command '${cmd}'. Run 'pvio --help' for the list of commands.\n`);
    return 2;
  }
  try {
    // `pvio top` runs hosts only with --demo (then `pvio console` can read its guests).
    if (!UNMONITORED.has(cmd) && (cmd !== 'top' || rest.includes('--demo'))) await serveMonitor(cmd, rest);
    await c.run(rest);
    // A command that finished but failed a check sets process.exitCode itself (compare with a
    // failed cell, bench-check with a regression): keep it.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`pvio ${cmd}: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\nusage: ${c.usage}\n`);
    // A client library may keep retrying in the background (etcd3 against an unreachable
    // server): a failed command still ends, once its message had time to reach the terminal.
    setTimeout(() => process.exit(1), 500).unref();
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
