/**
 * The control word between the host and the dedicated device thread, and the messages that keep
 * that thread's MemoryDirectory current.
 *
 * The device thread spends its life inside `runRnicEngine`, a synchronous loop, so it cannot
 * take a `message` event. Instead the host posts on a MessagePort, then raises CONTROL and wakes
 * the engine; the engine returns, the thread drains the port with `receiveMessageOnPort`, lowers
 * CONTROL and re-enters. STOP makes it leave for good.
 *
 * ```
 * word  field     writer                               reader
 * 0     CONTROL   host: RUN→MESSAGES (CAS), →STOP      engine loop (returns when ≠ RUN),
 *                 thread: MESSAGES→RUN (CAS)           device thread
 * 1     STATE     thread: STARTING→RUNNING→STOPPED     host (diagnostics)
 * 2-15  reserved  -                                    -
 * ```
 */

/** Word indices of the control buffer. */
export const enum EngineWord {
  CONTROL = 0,
  STATE = 1,
  WORDS = 16,
}

/** Values of CONTROL. */
export const enum EngineControl {
  /** Keep running the engine. */
  RUN = 0,
  /** Messages are waiting on the port: return, drain them, re-enter. */
  MESSAGES = 1,
  /** Return and exit. */
  STOP = 2,
}

/** Values of STATE. */
export const enum EngineState {
  STARTING = 0,
  RUNNING = 1,
  STOPPED = 2,
}

/** Host → device thread: the same domain-added / domain-removed news domains get. */
export type HostToEngine =
  | { readonly type: 'domain-added'; readonly domid: number; readonly buffer: SharedArrayBuffer }
  | { readonly type: 'domain-removed'; readonly domid: number };

/** Device thread → host. */
export type EngineToHost =
  | { readonly type: 'ready' }
  | {
      readonly type: 'stopped';
      /** CPU time of the device thread, ns (CpuClock.ts). */
      readonly cpuNs: number;
      /** Its stage ledger (ns per stage, base DEVICE) when the host instruments stages. */
      readonly stagesNs?: readonly number[];
    }
  | { readonly type: 'error'; readonly error: { code: string; message: string; stack?: string } };
