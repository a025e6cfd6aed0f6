import assert from 'node:assert/strict';
import { type ScenarioSpec, validateScenario } from '../../../hypervisor-sim/scenario/ScenarioSpec.js';

const P = '/nowhere/program.js';
const ok: ScenarioSpec = {
  guests: [
    { name: 'a', program: P, devices: [{ device: 'nic0', transport: 'paravirt' }] },
    { name: 'b', program: P, devices: [{ device: 'nic1', transport: 'passthrough' }] },
  ],
};

function refuses(spec: ScenarioSpec, field: string, why: RegExp): void {
  assert.throws(
    () => validateScenario(spec),
    (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'PV_ERR_CONFIG');
      assert.ok(err.message.startsWith(`${field}: `), `message names ${field}: ${err.message}`);
      assert.match(err.message, why);
      return true;
    },
  );
}

describe('scenario: bad scenarios are refused before anything starts, naming the field', () => {
  it('accepts a scenario mixing transports on distinct NICs', () => {
    validateScenario(ok);
  });

  it('unknown device', () => {
    refuses(
      { guests: [{ name: 'a', program: P, devices: [{ device: 'nic7', transport: 'paravirt' }] }] },
      'guests[0].devices[0].device',
      /unknown device 'nic7'.*nic0 … nic1/,
    );
  });

  it('unknown transport', () => {
    refuses(
      { guests: [{ name: 'a', program: P, devices: [{ device: 'nic0', transport: 'smoke' as never }] }] },
      'guests[0].devices[0].transport',
      /unknown transport 'smoke'/,
    );
  });

  it('a device cannot be passed through to two guests', () => {
    refuses(
      {
        guests: [
          { name: 'a', program: P, devices: [{ device: 'nic0', transport: 'passthrough' }] },
          { name: 'b', program: P, devices: [{ device: 'nic0', transport: 'native' }] },
        ],
      },
      'guests[1].devices[0].transport',
      /already owned by 'a'/,
    );
  });

  it('a passed-through device cannot also be served by the backend', () => {
    refuses(
      {
        guests: [
          { name: 'a', program: P, devices: [{ device: 'nic0', transport: 'paravirt' }] },
          { name: 'b', program: P, devices: [{ device: 'nic0', transport: 'passthrough' }] },
        ],
      },
      'guests[0].devices[0].transport',
      /not the driver domain's/,
    );
  });

  it('memory too small', () => {
    refuses({ guests: [{ name: 'a', program: P, memoryMiB: 1 }] }, 'guests[0].memoryMiB', /\[4, 4096\]/);
  });

  it('duplicate guest names and empty scenarios', () => {
    refuses(
      {
        guests: [
          { name: 'a', program: P },
          { name: 'a', program: P },
        ],
      },
      'guests[1].name',
      /used by two/,
    );
    refuses({ guests: [] }, 'guests', /at least one guest/);
  });

  it('host fields', () => {
    refuses({ host: { nics: 99 }, guests: ok.guests }, 'host.nics', /\[0, 16\]/);
    refuses(
      { host: { deviceEngine: 'gpu' as never }, guests: ok.guests },
      'host.deviceEngine',
      /'inline' or 'dedicated'/,
    );
  });
});
