// Draws the pairing QR in a terminal. The API hands out the QR as a PNG (data URL), so the PNG's
// module grid is read back (finder pattern → module size → one sample per module) and drawn
// with half blocks: two QR rows per text line.
import sharp from 'sharp';

export type QrMatrix = boolean[][];

/** The dark/light modules of a QR code PNG (true = dark), without its quiet zone. */
export async function qrMatrixFromDataUrl(dataUrl: string): Promise<QrMatrix> {
  const png = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
  const { data, info } = await sharp(png)
    .flatten({ background: '#ffffff' })
    .greyscale()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width: w, height: h, channels } = info;
  const dark = (x: number, y: number) => data[(y * w + x) * channels] < 128;
  let minX = w;
  let minY = h;
  let maxX = -1;
  let maxY = -1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      if (dark(x, y)) {
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
  if (maxX < 0) throw new Error('the QR image is blank');
  // The top-left finder pattern starts with a dark run 7 modules wide.
  let run = 0;
  while (minX + run <= maxX && dark(minX + run, minY)) run++;
  const size = run / 7;
  const n = Math.round((maxX - minX + 1) / size);
  const matrix: QrMatrix = [];
  for (let r = 0; r < n; r++) {
    const row: boolean[] = [];
    for (let c = 0; c < n; c++)
      row.push(
        dark(Math.min(maxX, Math.floor(minX + (c + 0.5) * size)), Math.min(maxY, Math.floor(minY + (r + 0.5) * size))),
      );
    matrix.push(row);
  }
  return matrix;
}

/**
 * Half-block drawing, light modules as ink (so it scans on the usual dark terminal); `color`
 * forces white-on-black so it scans on light themes too. A quiet zone of 2 modules surrounds it.
 */
export function renderQr(m: QrMatrix, color = false): string {
  const quiet = 2;
  const n = m.length + quiet * 2;
  const light = (r: number, c: number) => {
    const rr = r - quiet;
    const cc = c - quiet;
    return rr < 0 || cc < 0 || rr >= m.length || cc >= m.length || !m[rr][cc];
  };
  const lines: string[] = [];
  for (let r = 0; r < n; r += 2) {
    let line = '';
    for (let c = 0; c < n; c++) {
      const top = light(r, c);
      const bottom = r + 1 < n ? light(r + 1, c) : true;
      line += top && bottom ? '█' : top ? '▀' : bottom ? '▄' : ' ';
    }
    lines.push(color ? `\x1b[97;40m${line}\x1b[0m` : line);
  }
  return lines.join('\n');
}
