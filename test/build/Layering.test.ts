/**
 * DESIGN §3 / style §3.1: the layering is enforced by the compiler, not by memory.
 *
 * For each forbidden import, a temporary tree mirrors the repository layout with copies of the
 * REAL `tsconfig.base.json` and per-folder `tsconfig.json` files, a minimal legal source tree
 * (test/fixtures/forbidden/base) and one offending file (test/fixtures/forbidden/cases). The real
 * `tsc -b` must reject it with the expected error code, pointing at the offending file; the
 * control tree must build. A change to a tsconfig that opens a forbidden path fails this test.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURES = join(REPO, 'test', 'fixtures', 'forbidden');
const TSC = join(REPO, 'node_modules', '.bin', 'tsc');
const FOLDERS = ['protocol', 'drivers', 'hypervisor-sim', 'frontend', 'backend'] as const;
type Folder = (typeof FOLDERS)[number];

/** Outside rootDir / not in the project's file list (cross-folder import without a reference). */
const CROSS_FOLDER = ['TS6059', 'TS6307'];
/** Cannot find name 'node:fs' (no @types/node) / cannot find module. */
const NO_NODE_TYPES = ['TS2591', 'TS2307'];

interface Case {
  readonly rule: string;
  readonly folder: Folder;
  readonly fixture: string;
  readonly codes: readonly string[];
}

const FORBIDDEN: readonly Case[] = [
  { rule: 'protocol/ imports node:fs', folder: 'protocol', fixture: 'protocol-imports-node-fs', codes: NO_NODE_TYPES },
  {
    rule: 'protocol/ imports hypervisor-sim/',
    folder: 'protocol',
    fixture: 'protocol-imports-hypervisor-sim',
    codes: CROSS_FOLDER,
  },
  { rule: 'frontend/ imports backend/', folder: 'frontend', fixture: 'frontend-imports-backend', codes: CROSS_FOLDER },
  { rule: 'backend/ imports frontend/', folder: 'backend', fixture: 'backend-imports-frontend', codes: CROSS_FOLDER },
  {
    rule: 'frontend/ imports hypervisor-sim/',
    folder: 'frontend',
    fixture: 'frontend-imports-hypervisor-sim',
    codes: CROSS_FOLDER,
  },
  {
    rule: 'backend/ imports hypervisor-sim/',
    folder: 'backend',
    fixture: 'backend-imports-hypervisor-sim',
    codes: CROSS_FOLDER,
  },
];

/** Builds a temporary mirror of the layout with the real tsconfigs and the legal base tree. */
async function mirror(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pvio-layering-'));
  await cp(join(REPO, 'tsconfig.base.json'), join(root, 'tsconfig.base.json'));
  await writeFile(join(root, 'package.json'), '{ "type": "module" }\n');
  await symlink(join(REPO, 'node_modules'), join(root, 'node_modules'), 'dir');
  for (const folder of FOLDERS) {
    await cp(join(FIXTURES, 'base', folder), join(root, folder), { recursive: true });
    await cp(join(REPO, folder, 'tsconfig.json'), join(root, folder, 'tsconfig.json'));
  }
  return root;
}

/** Runs the real `tsc -b` on `projects` inside `root`; never rejects, returns exit code and output. */
function tscBuild(root: string, projects: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(TSC, ['-b', ...projects], { cwd: root, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

describe('layering (DESIGN §3): the compiler rejects forbidden imports with the real per-folder tsconfigs', function () {
  this.timeout(60_000);
  const roots: string[] = [];
  after(async () => {
    await Promise.all(roots.map((r) => rm(r, { recursive: true, force: true })));
  });

  it('control: the legal tree (every layer imports protocol/, frontend uses node:*) builds', async () => {
    const root = await mirror();
    roots.push(root);
    await cp(join(FIXTURES, 'cases', 'control-frontend-imports-protocol.ts'), join(root, 'frontend', 'control.ts'));
    const { code, output } = await tscBuild(root, FOLDERS);
    assert.equal(code, 0, `tsc -b failed on the legal tree:\n${output}`);
    assert.doesNotMatch(output, /error TS/);
  });

  for (const c of FORBIDDEN) {
    it(`forbidden: ${c.rule} fails with ${c.codes.join('/')}`, async () => {
      const root = await mirror();
      roots.push(root);
      const file = `${c.folder}/${c.fixture}.ts`;
      await cp(join(FIXTURES, 'cases', `${c.fixture}.ts`), join(root, file));
      const { code, output } = await tscBuild(root, [c.folder]);
      assert.notEqual(code, 0, `tsc -b accepted ${file}:\n${output}`);
      const errors = [...output.matchAll(/^(\S+)\(\d+,\d+\): error (TS\d+)/gm)].map((m) => [m[1], m[2]]);
      assert.ok(errors.length > 0, `no diagnostics in:\n${output}`);
      for (const [where, ts] of errors) {
        assert.equal(where, file, `only the offending file is reported:\n${output}`);
        assert.ok(c.codes.includes(ts), `${ts} is one of ${c.codes.join('/')}:\n${output}`);
      }
    });
  }
});
