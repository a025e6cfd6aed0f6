import assert from 'node:assert/strict';
import { HostDirectory, hostIdOfPort, PORTS_PER_HOST } from '../../../hypervisor-sim/hostd/HostDirectory.js';
import { EtcdServer, etcdBinary } from '../../helpers/EtcdServer.js';

let server: EtcdServer | undefined;
const open: HostDirectory[] = [];

async function dir(cluster: string): Promise<HostDirectory> {
  const d = await HostDirectory.connect({ endpoints: [(server as EtcdServer).endpoint], cluster, ttl: 2 });
  open.push(d);
  return d;
}

async function eventually(ms: number, fn: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('hostd/HostDirectory (etcd)', function () {
  this.timeout(60_000);

  before(async function () {
    if (etcdBinary() === undefined) {
      this.skip();
      return;
    }
    server = await EtcdServer.start();
  });

  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
  });

  after(async () => {
    await server?.destroy();
  });

  it('host ids are unique among racing hosts and stable per name', async () => {
    const ds = await Promise.all(['a', 'b', 'c', 'd'].map(() => dir('ids')));
    const ids = await Promise.all(ds.map((d, i) => d.allocateId(`h${i}`)));
    assert.equal(new Set(ids).size, 4, `distinct ids: ${ids}`);
    assert.deepEqual(await Promise.all(ds.map((d, i) => d.allocateId(`h${i}`))), ids);
    assert.equal(hostIdOfPort(ids[2] * PORTS_PER_HOST + 1), ids[2], 'a NIC port names its host');
  });

  it('every host sees every other host join and leave', async () => {
    const a = await dir('join');
    const b = await dir('join');
    await a.publish({ name: 'A', hostId: await a.allocateId('A'), link: '127.0.0.1:7001', pid: 1 });
    await b.publish({ name: 'B', hostId: await b.allocateId('B'), link: '127.0.0.1:7002', pid: 2 });
    await eventually(5000, () => a.byName('B')?.link === '127.0.0.1:7002', 'A sees B');
    await eventually(5000, () => b.byName('A') !== undefined, 'B sees A');
    await b.close();
    await eventually(5000, () => a.byName('B') === undefined, 'A sees B leave');
  });

  it('a crashed host (lease not revoked) leaves the directory once its TTL runs out', async () => {
    const a = await dir('crash');
    const b = await dir('crash');
    await b.publish({ name: 'B', hostId: await b.allocateId('B'), link: '127.0.0.1:7002', pid: 2 });
    await eventually(5000, () => a.byName('B') !== undefined, 'A sees B');
    await b.close(false);
    await eventually(2000 + 3000, () => a.byName('B') === undefined, 'B expires within TTL + slack');
  });

  it('records survive an etcd restart (hosts re-register)', async () => {
    const a = await dir('restart');
    const b = await dir('restart');
    await b.publish({ name: 'B', hostId: await b.allocateId('B'), link: '127.0.0.1:7002', pid: 2 });
    await eventually(5000, () => a.byName('B') !== undefined, 'A sees B');
    await (server as EtcdServer).stop();
    await (server as EtcdServer).resume();
    await eventually(15_000, () => a.byName('B') !== undefined, 'B is listed after the restart');
    // And it stays listed past a TTL (kept alive, or put again under a new lease).
    await new Promise((r) => setTimeout(r, 3000));
    await eventually(5000, () => a.byName('B') !== undefined, 'B still listed after a TTL');
  });
});
