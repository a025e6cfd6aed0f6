/**
 * Writes a `pvio compare` results directory: `results.json` (the run as is, so the report can be
 * re-rendered later), each plot as SVG and PNG, and `report.md`, which embeds the PNGs.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CompareResults } from '../compare/Results.js';
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
  await put('results.json', `${JSON.stringify(r, null, 2)}\n`);
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
