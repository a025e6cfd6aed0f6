/**
 * Writes a `pvio compare` results directory: `results.json` (the run as is, so the report can be
 * re-rendered later), each plot as SVG and PNG, and `report.md`, which embeds the PNGs; and the
 * final console screen of every domain of a cell that wrote one, as `consoles/<cellId>/<domain>.txt`
 * (kept out of results.json, whose schema does not carry them).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CompareResults, cellId } from '../compare/Results.js';
import { renderReport } from './Markdown.js';
import { PLOT_NAMES, plotSpecs, renderPlot } from './Plots.js';

/** PNG width, px: about twice a panel's natural width, so text stays sharp when the page is zoomed. */
export const PNG_WIDTH_PX = 1600;

/** Writes every file of the report into `dir` (created if needed); returns the paths written, in order. */
export async function writeReport(dir: string, r: CompareResults): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  const put = async (name: string, data: string | Uint8Array) => {
    const path = join(dir, name);
    await writeFile(path, data);
    written.push(path);
  };
  const cells = r.cells.map(({ consoles: _, ...cell }) => cell);
  await put('results.json', `${JSON.stringify({ ...r, cells }, null, 2)}\n`);
  for (const c of r.cells) {
    if (c.consoles === undefined) continue;
    await mkdir(join(dir, 'consoles', cellId(c)), { recursive: true });
    for (const [domain, screen] of Object.entries(c.consoles)) {
      await put(join('consoles', cellId(c), `${domain}.txt`), `${screen.join('\n')}\n`);
    }
  }
  const specs = plotSpecs(r);
  // One plot at a time: rendering is CPU-bound, and the run may share two cores with other work.
  for (const name of PLOT_NAMES) {
    const plot = await renderPlot(specs[name], PNG_WIDTH_PX);
    await put(`${name}.svg`, plot.svg);
    await put(`${name}.png`, plot.png);
  }
  await put('report.md', renderReport(r, PLOT_NAMES));
  return written;
}
