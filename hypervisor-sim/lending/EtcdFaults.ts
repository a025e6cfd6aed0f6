/**
 * How pvio's etcd clients ride out an etcd restart (the registry and the host directory).
 *
 * etcd3's defaults open a per-endpoint circuit breaker after 3 consecutive failures and keep it
 * open for 5 s; failures of the lease keep-alive and watch streams count too. While etcd is down
 * for a second, the streams alone open it, so the first calls after etcd is back fail for up to
 * 5 s with "circuit breaker is open" — a borrow that a user issues right after a restart would
 * fail although etcd answers. With one endpoint there is no other server to fail over to, so a
 * breaker buys nothing but that window. pvio keeps a breaker (it stops a dead endpoint from being
 * hammered) but probes again after HALF_OPEN_MS, and the global retry also waits out an open
 * breaker with a capped doubling backoff, so a call made during a short outage blocks for at most
 * ≈ 3.5 s (50 + 100 + 200 + 400 + 800 + 1000 + 1000 ms) and then fails with etcd's own error.
 */

import {
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IBackoff,
  isBrokenCircuitError,
  noJitterGenerator,
  retry,
} from 'cockatiel';
import { type IOptions, isRecoverableError } from 'etcd3';

/** A probe call goes through this long after the breaker opened. */
const HALF_OPEN_MS = 200;
/** Consecutive recoverable failures that open the breaker. */
const BREAK_AFTER = 5;
/** Retries of one call after its first attempt. */
const MAX_RETRIES = 7;
/** First and largest retry delay. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;

/** etcd3 `faultHandling` for pvio's clients; `watchBackoff` is the watch stream's reconnect delay. */
export function etcdFaultHandling(watchBackoff?: IBackoff<unknown>): NonNullable<IOptions['faultHandling']> {
  return {
    host: () =>
      circuitBreaker(handleWhen(isRecoverableError), {
        halfOpenAfter: HALF_OPEN_MS,
        breaker: new ConsecutiveBreaker(BREAK_AFTER),
      }),
    global: retry(
      handleWhen((e) => isRecoverableError(e) || isBrokenCircuitError(e)),
      {
        maxAttempts: MAX_RETRIES, // cockatiel counts retries, not attempts
        backoff: new ExponentialBackoff({
          initialDelay: RETRY_MIN_MS,
          maxDelay: RETRY_MAX_MS,
          generator: noJitterGenerator,
        }),
      },
    ),
    ...(watchBackoff ? { watchBackoff } : {}),
  };
}
