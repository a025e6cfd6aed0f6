/**
 * The control block shared between the fuzzer's thread and its mutator Worker (Mutator.ts,
 * MutatorWorker.ts): one small SharedArrayBuffer of Int32 words.
 *
 * ```
 * word  field     writer   reader   note
 * 0     command   main     worker   PAUSE 0, RUN 1, EXIT 2 (the worker waits on it while paused)
 * 1     state     worker   main     PAUSED 0, RUNNING 1 (main waits on it to pause)
 * 2     ranges    main     worker   number of (word offset, word count) pairs that follow
 * 3     writes    worker   main     words rewritten so far (wraps)
 * 4     seed      main     worker   reseeds the worker's generator on each RUN
 * 5..   pairs     main     worker   word offset into the target buffer, word count
 * ```
 */

/** Control word indices. */
export const enum MutWord {
  COMMAND = 0,
  STATE = 1,
  RANGES = 2,
  WRITES = 3,
  SEED = 4,
  PAIRS = 5,
}

/** Commands. */
export const enum MutCommand {
  PAUSE = 0,
  RUN = 1,
  EXIT = 2,
}

/** States. */
export const enum MutState {
  PAUSED = 0,
  RUNNING = 1,
}

/** Most ranges one RUN may name. */
export const MUT_MAX_RANGES = 64;
/** Words of the control block. */
export const MUT_CONTROL_WORDS = MutWord.PAIRS + 2 * MUT_MAX_RANGES;
