// The streaming benchmarks of the streaming issue in one run: SSE parse rate (bench/sse.ts) and
// WebSocket fan-out to 1,000 subscribers next to raw server.publish (bench/fanout.ts).
// Run: bun bench/stream.ts
const here = import.meta.dir;
for (const script of ['sse.ts', 'fanout.ts']) {
  console.log(`\n== bench/${script}`);
  const proc = Bun.spawn([process.execPath, `${here}/${script}`], { stdout: 'inherit', stderr: 'inherit' });
  const code = await proc.exited;
  if (code !== 0) {
    console.error(`bench/${script} exited ${code}`);
    process.exit(code);
  }
}
