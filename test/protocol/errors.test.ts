import assert from 'node:assert/strict';
import { MessageChannel, Worker } from 'node:worker_threads';
import {
  ArgError,
  BlockError,
  ConfigError,
  codeFromStatus,
  DomainError,
  ERROR_CATALOGUE,
  type ErrorArea,
  type ErrorCode,
  EvtchnError,
  errorFromCode,
  fromWireError,
  GrantError,
  isErrorCode,
  LendingError,
  MemoryError,
  PcieError,
  PvError,
  RdmaError,
  RequestError,
  RingError,
  StoreError,
  statusFromError,
  toWireError,
  VirtioError,
  type WireError,
  XenbusError,
} from '../../protocol/errors.js';

/** The class each area must produce, stated independently of errors.ts's own table. */
const AREA_CLASS: Record<ErrorArea, typeof PvError> = {
  arg: ArgError,
  memory: MemoryError,
  ring: RingError,
  grant: GrantError,
  evtchn: EvtchnError,
  store: StoreError,
  xenbus: XenbusError,
  domain: DomainError,
  request: RequestError,
  config: ConfigError,
  rdma: RdmaError,
  pcie: PcieError,
  lending: LendingError,
  block: BlockError,
  virtio: VirtioError,
};

const CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/** Sends each value through a real MessageChannel and collects what arrives. */
async function throughMessageChannel<T>(values: readonly T[]): Promise<unknown[]> {
  const { port1, port2 } = new MessageChannel();
  try {
    const received: unknown[] = [];
    const all = new Promise<void>((resolve) => {
      port2.on('message', (m: unknown) => {
        received.push(m);
        if (received.length === values.length) resolve();
      });
    });
    for (const v of values) port1.postMessage(v);
    await all;
    return received;
  } finally {
    port1.close();
    port2.close();
  }
}

/** A worker builds each error with errorFromCode, flattens it with toWireError, and posts it back. */
async function fromWorker(codes: readonly ErrorCode[]): Promise<WireError[]> {
  const errorsUrl = new URL('../../protocol/errors.js', import.meta.url).href;
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     import(workerData.errorsUrl).then(({ errorFromCode, toWireError }) => {
       parentPort.postMessage(workerData.codes.map((c) => toWireError(errorFromCode(c, 'thrown in a worker: ' + c))));
     });`,
    { eval: true, workerData: { errorsUrl, codes } },
  );
  try {
    return await new Promise<WireError[]>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`worker exited (${code}) before answering`)));
    });
  } finally {
    await worker.terminate();
  }
}

function checkRebuilt(err: Error, code: ErrorCode, message: string, how: string): void {
  const cls = AREA_CLASS[ERROR_CATALOGUE[code].area];
  assert.ok(err instanceof cls, `${code} ${how}: class ${cls.name} restored`);
  assert.ok(err instanceof PvError, `${code} ${how}: a PvError`);
  assert.equal(err.code, code, `${code} ${how}: code survives`);
  assert.equal(err.name, cls.name, `${code} ${how}: name`);
  assert.equal(err.status, ERROR_CATALOGUE[code].status, `${code} ${how}: status`);
  assert.equal(err.message, message, `${code} ${how}: message survives`);
}

describe('errors (style §3.7): the catalogue', () => {
  it('every code: right subclass and name, unique negative status, status round trip, wire round trip across structuredClone, MessageChannel and a worker', async function () {
    this.timeout(10_000);
    assert.ok(CODES.length > 0);
    const statuses = new Set<number>();
    for (const code of CODES) {
      const spec = ERROR_CATALOGUE[code];
      const cls = AREA_CLASS[spec.area];
      assert.ok(cls, `${code}: area ${spec.area} has a class`);
      assert.ok(['request', 'fatal', 'caller'].includes(spec.policy), `${code}: known policy`);
      assert.ok(isErrorCode(code));

      const err = errorFromCode(code);
      assert.ok(err instanceof cls && err instanceof PvError && err instanceof Error, `${code}: ${cls.name}`);
      for (const other of Object.values(AREA_CLASS)) {
        if (other !== cls) assert.ok(!(err instanceof other), `${code} is not a ${other.name}`);
      }
      assert.equal(err.name, cls.name, `${code}: name`);
      assert.equal(err.code, code);
      assert.equal(err.policy, spec.policy);
      assert.equal(err.message, spec.message, `${code}: default message from the catalogue`);
      assert.equal(errorFromCode(code, 'custom').message, 'custom');

      assert.ok(Number.isInteger(spec.status) && spec.status < 0, `${code}: status ${spec.status} is negative`);
      assert.ok(spec.status >= -32768, `${code}: status fits the i16 slot field`);
      assert.ok(!statuses.has(spec.status), `${code}: status ${spec.status} is unique`);
      statuses.add(spec.status);
      assert.equal(codeFromStatus(spec.status), code, `${code}: codeFromStatus round trip`);
      assert.equal(statusFromError(err), spec.status, `${code}: statusFromError gives the code's status`);
      assert.equal(err.status, spec.status);

      const cloned = structuredClone(toWireError(errorFromCode(code, `cloned ${code}`)));
      checkRebuilt(fromWireError(cloned), code, `cloned ${code}`, 'via structuredClone');
    }

    // Anything thrown without a catalogue code answers as a bad request.
    assert.equal(statusFromError(new Error('plain')), ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status);
    assert.equal(statusFromError('a string'), ERROR_CATALOGUE.PV_ERR_BAD_REQUEST.status);

    const wires = CODES.map((code) => toWireError(errorFromCode(code, `posted ${code}`)));
    const received = await throughMessageChannel(wires);
    assert.equal(received.length, CODES.length);
    received.forEach((wire, i) => {
      checkRebuilt(fromWireError(wire as WireError), CODES[i], `posted ${CODES[i]}`, 'via MessageChannel');
    });

    const fromThread = await fromWorker(CODES);
    assert.equal(fromThread.length, CODES.length);
    fromThread.forEach((wire, i) => {
      checkRebuilt(fromWireError(wire), CODES[i], `thrown in a worker: ${CODES[i]}`, 'via worker postMessage');
    });
  });

  it('codes outside the catalogue: status 0 is success, unknown statuses and foreign errors degrade predictably', () => {
    assert.equal(codeFromStatus(0), undefined);
    assert.equal(codeFromStatus(-9999), 'PV_ERR_BAD_REQUEST');
    assert.equal(isErrorCode('PV_ERR_NOPE'), false);
    assert.equal(isErrorCode('toString'), false, 'inherited properties are not codes');

    const foreign = Object.assign(new Error('ENOENT: no file'), { code: 'ENOENT' });
    const wire = structuredClone(toWireError(foreign));
    assert.deepEqual(wire, { code: 'ENOENT', message: 'ENOENT: no file' });
    const back = fromWireError(wire) as Error & { code?: string };
    assert.ok(!(back instanceof PvError));
    assert.equal(back.code, 'ENOENT');
    assert.deepEqual(toWireError('boom'), { code: 'PV_ERR_UNKNOWN', message: 'boom' });
    assert.deepEqual(toWireError(new Error('x')), { code: 'PV_ERR_UNKNOWN', message: 'x' });
  });
});
