/**
 * A side channel for helper threads a domain starts on its own (the tcp provider's software NIC
 * thread): their owner collects the helper's CPU time and stage ledger when the helper ends and
 * files it here; the domain worker takes what was filed when the program returns and sends it
 * with the domain's result (`DomainResult.threads`), so the scenario can report it beside the
 * dedicated device thread. Per thread (a module singleton), like the ledger.
 */

/** What one helper thread spent. */
export interface ThreadReport {
  /** Which thread (`tcp-nic client/tcp0`). */
  readonly name: string;
  /** CPU time of the thread, ns (its own schedstat), or -1 if it could not be read. */
  readonly cpuNs: number;
  /** Its ledger (ns per stage, length Stage.COUNT) when stages were instrumented. */
  readonly stagesNs?: readonly number[];
}

const filed: ThreadReport[] = [];

/** Files a helper's report (its owner calls this once, when the helper has ended). */
export function fileThreadReport(r: ThreadReport): void {
  filed.push(r);
}

/** Takes (and clears) every report filed in this thread. */
export function takeThreadReports(): ThreadReport[] {
  return filed.splice(0);
}
