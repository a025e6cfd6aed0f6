import assert from 'node:assert/strict';
import { payNs, payRoute } from '../../../hypervisor-sim/pcie/PayNs.js';
import { PcieCluster } from '../../../hypervisor-sim/pcie/PcieCluster.js';
import {
  FABRIC_PROFILE_NAMES,
  type FabricProfileName,
  fabricProfile,
  PCIE3_X8_NTB,
} from '../../../hypervisor-sim/pcie/Profiles.js';
import type { Route } from '../../../hypervisor-sim/pcie/Types.js';
import { PvError } from '../../../protocol/errors.js';
import { Stage, stages } from '../../../protocol/stage/StageLedger.js';
import { hostPhysAddr } from '../../../protocol/Types.js';
import { MIB, mutable, threeHosts } from './helpers/Clusters.js';

const c = PcieCluster.create(threeHosts());
const A_RC = { host: 'A', node: 'rc' };
const at = (v: number) => hostPhysAddr(v);
/** A → B RAM, back to back: link, NTB, link. */
const remoteRam = (): Route => c.route(A_RC, at(0x9000_0000), 64);
/** A's CPU → nvme0's BAR: two links, no NTB (same link count as remoteRam). */
const localBar = (): Route => c.route(A_RC, at(0x8000_0000), 64);
/** A → B → C RAM: two NTBs. */
const chain = (): Route => c.route(A_RC, at(0x9800_0000), 64);
const pcie = fabricProfile('pcie3-x8-ntb');
const ideal = fabricProfile('ideal');

describe('pcie timing profiles: selection by name', () => {
  it('the names are ideal and pcie3-x8-ntb, and each selects its profile', () => {
    assert.deepEqual([...FABRIC_PROFILE_NAMES], ['ideal', 'pcie3-x8-ntb']);
    for (const n of FABRIC_PROFILE_NAMES) assert.equal(fabricProfile(n).name, n);
  });

  it('an unknown name is PV_ERR_INVALID_ARG listing the choices', () => {
    assert.throws(
      () => fabricProfile('pcie5' as FabricProfileName),
      (e: unknown) => e instanceof PvError && e.code === 'PV_ERR_INVALID_ARG' && /ideal, pcie3-x8-ntb/.test(e.message),
    );
  });
});

describe('pcie timing profiles: pcie3-x8-ntb reproduces the published figures (reference §6)', () => {
  it('one NTB crossing costs 350–370 ns: the hop itself, and remote minus local over as many links', () => {
    const r = remoteRam();
    const ntb = r.hops.filter((h) => h.kind === 'ntb');
    assert.equal(ntb.length, 1);
    const hop = pcie.hopLatencyNs(ntb[0]);
    assert.ok(hop >= 350 && hop <= 370, `NTB hop ${hop} ns`);
    const local = localBar();
    assert.equal(local.hops.length, r.hops.filter((h) => h.kind === 'link').length, 'same number of links');
    const added = pcie.costNs(r, 64, 'write') - pcie.costNs(local, 64, 'write');
    assert.ok(added >= 350 && added <= 370, `an NTB adds ${added} ns`);
  });

  it('RAM → remote RAM one way lands in 550–700 ns (NOSSDAV ≈ 573 ns, CC’19 550–580 ns)', () => {
    const r = remoteRam();
    assert.deepEqual(
      r.hops.map((h) => h.kind),
      ['link', 'ntb', 'link'],
    );
    const ns = pcie.costNs(r, 64, 'write');
    assert.ok(ns >= 550 && ns <= 700, `RAM → remote RAM ${ns} ns`);
  });

  it('two NTB crossings add 700–730 ns (CC’19 §7.4: 700–730 ns for the lent NVMe)', () => {
    const r = chain();
    const ntb = r.hops.filter((h) => h.kind === 'ntb').map((h) => pcie.hopLatencyNs(h));
    assert.equal(ntb.length, 2);
    const sum = ntb[0] + ntb[1];
    assert.ok(sum >= 700 && sum <= 730, `two crossings ${sum} ns`);
  });

  it('4 MiB through one NTB is bandwidth-bound at the NTB DMA peak (4.8 GB/s write, 3 GB/s read)', () => {
    const r = remoteRam();
    const bytes = 4 * MIB;
    for (const [dir, peak] of [
      ['write', 4.8],
      ['read', 3.0],
    ] as const) {
      const ns = pcie.costNs(r, bytes, dir);
      const ser = pcie.serialisationNs(r, bytes, dir);
      assert.equal(ser, bytes / peak, `${dir}: the NTB is the narrowest hop`);
      assert.ok(ser / ns > 0.99, `${dir}: serialisation is ${((100 * ser) / ns).toFixed(2)} % of the cost`);
    }
  });

  it('a link carries raw · MPS / (MPS + 24 B) of data: Gen3 x8 ≈ 7.2 GB/s at 256 B, ≈ 6.6 at 128 B', () => {
    const link = localBar().hops[0];
    assert.ok(link.kind === 'link');
    assert.ok(Math.abs(PCIE3_X8_NTB.linkBytesPerNs - 7.877) < 0.001, 'Gen3 x8 raw ≈ 7.88 GB/s');
    assert.ok(Math.abs(pcie.hopBytesPerNs(link, 'write') - 7.2) < 0.01);
    assert.ok(Math.abs(pcie.hopBytesPerNs({ ...link, maxPayload: 128 }, 'write') - 6.633) < 0.01);
    // Local 4 MiB DMA is bound by the link, not by an NTB.
    assert.equal(pcie.serialisationNs(localBar(), 4 * MIB, 'write'), (4 * MIB) / pcie.hopBytesPerNs(link, 'write'));
  });

  it('a read pays the hop latency twice (request out, completion back); a write once', () => {
    const r = remoteRam();
    assert.equal(pcie.costNs(r, 0, 'read'), 2 * pcie.costNs(r, 0, 'write'));
    assert.equal(pcie.costNs(r, 0, 'write'), pcie.latencyNs(r));
  });

  it('per-link overrides in the topology count: a slower link becomes the narrowest hop', () => {
    const s = mutable();
    s.hosts[0].links[3] = { a: 'rc', b: 'ntbA', latencyNs: 250, bytesPerNs: 1.97 };
    const slow = PcieCluster.create(s).route(A_RC, at(0x9000_0000), MIB);
    assert.equal(pcie.latencyNs(slow), 250 + 360 + 100);
    assert.equal(pcie.serialisationNs(slow, MIB, 'write'), MIB / ((1.97 * 256) / 280));
  });

  it('a CPU access to local RAM crosses no link and costs nothing on the fabric', () => {
    const r = c.route(A_RC, at(0x1000), 4096);
    assert.equal(pcie.costNs(r, 4096, 'write'), 0);
  });
});

describe('pcie timing profiles: ideal costs nothing anywhere', () => {
  it('every hop, route, size and direction costs 0, link overrides included', () => {
    const s = mutable();
    s.hosts[0].links[3] = { a: 'rc', b: 'ntbA', latencyNs: 250, bytesPerNs: 1 };
    const slow = PcieCluster.create(s).route(A_RC, at(0x9000_0000), MIB);
    for (const r of [remoteRam(), localBar(), chain(), slow]) {
      assert.ok(r.hops.length > 0);
      for (const h of r.hops) assert.equal(ideal.hopLatencyNs(h), 0);
      for (const bytes of [0, 64, 4 * MIB]) {
        assert.equal(ideal.costNs(r, bytes, 'write'), 0);
        assert.equal(ideal.costNs(r, bytes, 'read'), 0);
      }
    }
    assert.equal(chain().ntbCrossings, 2, 'the hops are still counted');
  });

  it('costNs refuses a negative or non-finite size', () => {
    const invalid = (e: unknown): boolean => e instanceof PvError && e.code === 'PV_ERR_INVALID_ARG';
    assert.throws(() => pcie.costNs(remoteRam(), -1, 'write'), invalid);
    assert.throws(() => ideal.costNs(remoteRam(), Number.NaN, 'read'), invalid);
  });
});

describe('pcie payNs: real delay accounted as FABRIC', () => {
  afterEach(() => stages.disable());

  it('returns at once for 0, negative and NaN, and after spinning or sleeping for small and large values', () => {
    for (const ns of [0, -5, Number.NaN, 1, 400, 3000, 20_000]) assert.equal(payNs(ns), undefined);
  });

  it('attributes the paid time to FABRIC and restores the caller’s stage', () => {
    stages.enable();
    const prev = stages.enter(Stage.DEVICE);
    payNs(2000);
    payNs(12_000);
    assert.equal(stages.current, Stage.DEVICE);
    stages.enter(prev);
    const s = stages.snapshot();
    // payNs waits at least what it was asked (it spins until the clock passes the end).
    assert.ok(s[Stage.FABRIC] >= 14_000 - 1, `FABRIC ${s[Stage.FABRIC]} ns`);
    assert.equal(s[Stage.RING] + s[Stage.GRANT], 0);
  });

  it('payRoute pays and returns the profile’s cost (0 under ideal)', () => {
    assert.equal(payRoute(ideal, remoteRam(), 4096, 'write'), 0);
    assert.equal(payRoute(pcie, remoteRam(), 64, 'read'), pcie.costNs(remoteRam(), 64, 'read'));
  });
});
