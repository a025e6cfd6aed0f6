/**
 * Hosts that live in OTHER threads of this process (a `pvio compare` cell runs its scenario in a
 * piscina worker), reached over one BroadcastChannel, `pvio-monitor`:
 *
 * ```
 * worker → all   {op:'up', thread}  / {op:'down', thread}   first host registered / last one gone
 * main   → all   {op:'who'}                                 workers with hosts answer 'up'
 * main   → all   {op:'snapshot', id}                        → {op:'hosts', id, thread, hosts}
 * main   → all   {op:'console', id, domain}                 → {op:'screen', id, thread, answer?}
 * ```
 * Workers answer from their own LiveHosts on their event loop (a cell awaits its domains, so it
 * is free); the main thread knows from `up`/`down` how many answers to wait for, and waits at
 * most ANSWER_MS, so a busy or dying worker costs one frame, not a hang. Channels are unref'd:
 * they never keep a thread alive.
 */

import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads';
import type { ConsoleAnswer } from './MonitorServer.js';
import type { HostSnapshot } from './Snapshot.js';

const CHANNEL = 'pvio-monitor';
/** Longest wait for the other threads' answers. */
const ANSWER_MS = 500;
/** How long a new client listens for answers to its 'who' before its first request. */
const WHO_MS = 100;

type Msg =
  | { op: 'up' | 'down'; thread: number }
  | { op: 'who' }
  | { op: 'snapshot'; id: number }
  | { op: 'console'; id: number; domain: string }
  | { op: 'hosts'; id: number; thread: number; hosts: HostSnapshot[] }
  | { op: 'screen'; id: number; thread: number; answer?: ConsoleAnswer };

/** What a worker thread answers with (LiveHosts supplies it). */
export interface LocalAnswers {
  hosts(): HostSnapshot[];
  console(domain: string): Promise<ConsoleAnswer | undefined>;
}

let workerChannel: BroadcastChannel | undefined;

/** A worker thread got its first host: answer monitors from now on. */
export function announceUp(local: LocalAnswers): void {
  if (isMainThread || workerChannel !== undefined) return;
  const ch = new BroadcastChannel(CHANNEL);
  (ch as unknown as { unref(): void }).unref();
  ch.onmessage = (ev: MessageEvent) => {
    const m = ev.data as Msg;
    if (m.op === 'who') ch.postMessage({ op: 'up', thread: threadId } satisfies Msg);
    else if (m.op === 'snapshot') ch.postMessage({ op: 'hosts', id: m.id, thread: threadId, hosts: local.hosts() });
    else if (m.op === 'console') {
      void local.console(m.domain).then(
        (answer) => ch.postMessage({ op: 'screen', id: m.id, thread: threadId, answer } satisfies Msg),
        () => ch.postMessage({ op: 'screen', id: m.id, thread: threadId } satisfies Msg),
      );
    }
  };
  ch.postMessage({ op: 'up', thread: threadId } satisfies Msg);
  workerChannel = ch;
}

/** A worker thread's last host is gone. */
export function announceDown(): void {
  if (workerChannel === undefined) return;
  workerChannel.postMessage({ op: 'down', thread: threadId } satisfies Msg);
  workerChannel.close();
  workerChannel = undefined;
}

/** The main thread's side: asks every worker that has hosts. */
export class ThreadHostsClient {
  private readonly _ch = new BroadcastChannel(CHANNEL);
  private readonly _threads = new Set<number>();
  private readonly _pending = new Map<number, (m: Msg) => void>();
  private _nextId = 1;
  /** Settles once the workers that already had hosts had time to answer 'who'. */
  private readonly _introduced: Promise<void>;

  constructor() {
    (this._ch as unknown as { unref(): void }).unref();
    this._ch.onmessage = (ev: MessageEvent) => {
      const m = ev.data as Msg;
      if (m.op === 'up') this._threads.add(m.thread);
      else if (m.op === 'down') this._threads.delete(m.thread);
      else if (m.op === 'hosts' || m.op === 'screen') this._pending.get(m.id)?.(m);
    };
    this._ch.postMessage({ op: 'who' } satisfies Msg);
    this._introduced = new Promise((resolve) => setTimeout(resolve, WHO_MS));
  }

  /** Worker threads known to have hosts. */
  get threads(): number {
    return this._threads.size;
  }

  /** Every worker's host snapshots (those that answer within ANSWER_MS). */
  async hosts(): Promise<HostSnapshot[]> {
    const out: HostSnapshot[] = [];
    await this._ask({ op: 'snapshot', id: 0 }, (m) => {
      if (m.op === 'hosts') out.push(...m.hosts);
      return false;
    });
    return out;
  }

  /** The console of `domain` in whichever worker has it. */
  async console(domain: string): Promise<ConsoleAnswer | undefined> {
    let found: ConsoleAnswer | undefined;
    await this._ask({ op: 'console', id: 0, domain }, (m) => {
      if (m.op === 'screen' && m.answer !== undefined) found = m.answer;
      return found !== undefined;
    });
    return found;
  }

  close(): void {
    this._ch.close();
  }

  /** Broadcasts `req` and feeds answers to `take` until every known worker answered, `take` says done, or time is up. */
  private async _ask(req: Msg & { id: number }, take: (m: Msg) => boolean): Promise<void> {
    await this._introduced;
    if (this._threads.size === 0) return;
    const id = this._nextId++;
    const waiting = new Set(this._threads);
    return new Promise<void>((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this._pending.delete(id);
        resolve();
      };
      const timer = setTimeout(finish, ANSWER_MS);
      this._pending.set(id, (m) => {
        if ('thread' in m) waiting.delete(m.thread);
        if (take(m) || waiting.size === 0) finish();
      });
      this._ch.postMessage({ ...req, id });
    });
  }
}
