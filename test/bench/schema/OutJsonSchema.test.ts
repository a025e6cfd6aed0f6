import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';

const PVIO = fileURLToPath(new URL('../../../cli/pvio.js', import.meta.url));
const SCHEMA = fileURLToPath(new URL('../../../../bench/schema/perftest-out.schema.json', import.meta.url));

function validator() {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
  const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA, 'utf8')));
  return (doc: unknown) => {
    const ok = validate(doc);
    return { ok, errors: ajv.errorsText(validate.errors) };
  };
}

describe('perftest --out_json schema (bench/schema/perftest-out.schema.json)', () => {
  const check = validator();

  it('write_lat over two modes writes an array of two schema-valid documents', function () {
    this.timeout(60_000);
    const dir = mkdtempSync(join(tmpdir(), 'pvio-schema-'));
    try {
      const file = join(dir, 'out.json');
      const r = spawnSync(
        process.execPath,
        [PVIO, 'write_lat', '-s', '64', '-n', '200', '--mode', 'paravirt,passthrough', '--out_json_file', file],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      const doc = JSON.parse(readFileSync(file, 'utf8')) as unknown[];
      const v = check(doc);
      assert.ok(v.ok, v.errors);
      assert.equal(doc.length, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the schema rejects what perftest users were bitten by: missing keys and a results object per size', () => {
    const info = {
      test: 'RDMA_Write_Latency_Test',
      Dual_port: 'OFF',
      Device: 'nic1',
      Number_of_qps: 1,
      Transport_type: 'paravirt',
      Connection_type: 'RC',
      Using_SRQ: 'OFF',
      TX_depth: 1,
      Mtu: 4096,
      Link_type: 'IB',
      Max_inline_data: 80,
      rdma_cm_QPs: 'OFF',
      Data_ex_method: 'store',
    };
    const row = {
      MsgSize: 64,
      n_iterations: 200,
      t_min: 1,
      t_max: 2,
      t_typical: 1.5,
      t_avg: 1.5,
      t_stdev: 0.1,
      percentile_99: 2,
      'percentile_99.9': 2,
    };
    assert.ok(check({ test_info: info, results: [row] }).ok);
    assert.ok(!check({ test_info: info, results: row }).ok, 'results must be an array, one entry per size');
    const { t_typical: _, ...noTypical } = row;
    assert.ok(!check({ test_info: info, results: [noTypical] }).ok, 'a latency row needs t_typical');
    assert.ok(!check({ test_info: { ...info, test: 'Write' }, results: [row] }).ok, 'perftest test names only');
  });
});
