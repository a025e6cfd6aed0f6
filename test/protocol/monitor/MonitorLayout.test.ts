import assert from 'node:assert/strict';
import {
  DEFAULT_RING_RECORDS,
  DOMAIN_RECORD_BYTES,
  DomainCounter,
  DomainRecordWord,
  domainRecordByte,
  MONITOR_HEADER_BYTES,
  MONITOR_MAGIC,
  MonitorWord,
  monitorBytes,
  RING_KINDS,
  RING_RECORD_BYTES,
  RING_RECORD_COUNTERS,
  RingPhase,
  RingRecordWord,
  ringKindCode,
  ringKindName,
  ringRecordByte,
  ringState,
  ringStateOwner,
  ringStatePhase,
} from '../../../protocol/monitor/MonitorLayout.js';
import { RingCounter } from '../../../protocol/ring/RingCounters.js';

describe('MonitorLayout: every offset of the file-comment table', () => {
  it('header: magic "PVMN", version, maxDomains, ringRecords at bytes 0, 4, 8, 12; records start at 64', () => {
    assert.equal(MonitorWord.MAGIC * 4, 0);
    assert.equal(MonitorWord.VERSION * 4, 4);
    assert.equal(MonitorWord.MAX_DOMAINS * 4, 8);
    assert.equal(MonitorWord.RING_RECORDS * 4, 12);
    assert.equal(MONITOR_HEADER_BYTES, 64);
    assert.equal(Buffer.from(new Uint32Array([MONITOR_MAGIC]).buffer).toString('latin1'), 'PVMN');
  });

  it('domain record: 64 bytes, state at 0, tid at 4, five Float64 counters from byte 8 in table order', () => {
    assert.equal(DOMAIN_RECORD_BYTES, 64);
    assert.equal(DomainRecordWord.STATE * 4, 0);
    assert.equal(DomainRecordWord.TID * 4, 4);
    assert.equal(DomainRecordWord.COUNTERS_BYTE, 8);
    const at = (c: DomainCounter): number => DomainRecordWord.COUNTERS_BYTE + c * 8;
    assert.deepEqual(
      [
        DomainCounter.GRANT_MAPS,
        DomainCounter.GRANT_UNMAPS,
        DomainCounter.GRANT_COPIES,
        DomainCounter.GRANT_COPY_BYTES,
        DomainCounter.NOTIFIES,
      ].map(at),
      [8, 16, 24, 32, 40],
    );
    assert.ok(at(DomainCounter.COUNT) <= DOMAIN_RECORD_BYTES, 'the counters fit the record');
    assert.equal(domainRecordByte(0), 64);
    assert.equal(domainRecordByte(3), 64 + 3 * 64);
  });

  it('ring record: 96 bytes, state/gen/kind/owner/peer/end words, seven Float64 counters at 32 in RingCounter order', () => {
    assert.equal(RING_RECORD_BYTES, 96);
    assert.deepEqual(
      [
        RingRecordWord.STATE,
        RingRecordWord.GEN,
        RingRecordWord.KIND,
        RingRecordWord.OWNER,
        RingRecordWord.PEER,
        RingRecordWord.END,
      ].map((w) => w * 4),
      [0, 4, 8, 12, 16, 20],
    );
    assert.equal(RingRecordWord.COUNTERS_BYTE, 32);
    assert.equal(RING_RECORD_COUNTERS, 7);
    const at = (c: RingCounter): number => RingRecordWord.COUNTERS_BYTE + c * 8;
    assert.deepEqual(
      [
        RingCounter.REQUESTS,
        RingCounter.RESPONSES,
        RingCounter.NOTIFIES,
        RingCounter.SUPPRESSED,
        RingCounter.FULL_STALLS,
        RingCounter.BATCHES,
        RingCounter.BATCHED_ITEMS,
      ].map(at),
      [32, 40, 48, 56, 64, 72, 80],
    );
    assert.ok(at(RingCounter.COUNT) <= RING_RECORD_BYTES, 'the counters fit the record');
  });

  it('ring records follow the domain records; every Float64 block is 8-byte aligned; total size adds up', () => {
    for (const d of [1, 3, 32]) {
      assert.equal(ringRecordByte(d, 0), 64 + d * 64);
      assert.equal(ringRecordByte(d, 5), 64 + d * 64 + 5 * 96);
      assert.equal(monitorBytes(d, DEFAULT_RING_RECORDS), 64 + d * 64 + DEFAULT_RING_RECORDS * 96);
      for (let i = 0; i < 4; i++) {
        assert.equal((ringRecordByte(d, i) + RingRecordWord.COUNTERS_BYTE) % 8, 0);
        assert.equal((domainRecordByte(i) + DomainRecordWord.COUNTERS_BYTE) % 8, 0);
      }
    }
  });

  it('a ring state word carries its owner and phase; 0 is free for every owner', () => {
    for (const owner of [0, 1, 7, 32766]) {
      for (const phase of [RingPhase.CLAIMING, RingPhase.LIVE]) {
        const s = ringState(owner, phase);
        assert.notEqual(s, 0);
        assert.equal(ringStateOwner(s), owner);
        assert.equal(ringStatePhase(s), phase);
      }
    }
    assert.equal(ringStatePhase(0), RingPhase.FREE);
  });

  it('ring kinds round-trip by code; an unknown kind is code 0 "other"', () => {
    for (const k of ['blkif', 'vrdma-ctrl', 'vrdma-data', 'io']) assert.equal(ringKindName(ringKindCode(k)), k);
    assert.equal(ringKindCode('nope'), 0);
    assert.equal(ringKindName(RING_KINDS.length + 3), 'other');
  });
});
