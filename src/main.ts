// Starts the gateway: config → gateway → HTTP server; clean shutdown on SIGTERM/SIGINT.
import { DatabaseLocked, lockDatabase } from '../db/lock.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createGateway } from './gateway.ts';
import { buildServer } from './server.ts';

/** A bad setting (found in the environment, or at start: e.g. a CLUSTER_SECRET other than the cluster's) stops the start with one line. */
function exitOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    console.error(`switchboard: invalid configuration: ${err.message}`);
    process.exit(2);
  }
  throw err;
}

let config;
try {
  config = loadConfig();
} catch (err) {
  exitOnConfigError(err);
}

// Held until the process ends (the OS releases it then, kill -9 included): two gateways working
// one inbox would send replies twice.
try {
  lockDatabase(config.databasePath);
} catch (err) {
  if (!(err instanceof DatabaseLocked)) throw err;
  console.error(`switchboard: ${err.message}`);
  process.exit(3);
}

const gw = createGateway(config);
const app = buildServer(gw);
await gw.start().catch(exitOnConfigError);
app.listen({ port: config.port, hostname: config.host, maxRequestBodySize: config.bodyLimitBytes * 2 });
gw.log.info(
  { port: app.server?.port, host: config.host, db: config.databasePath, cluster: Boolean(config.redisUrl) },
  'switchboard listening',
);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  gw.log.info({ signal }, 'shutting down');
  gw.ready = false;
  // Live streams end first (the server's stop waits for every open WebSocket), then new
  // connections stop and in-flight requests finish.
  gw.pipeline.hub.disconnectAll();
  await app.server?.stop(false);
  await new Promise((r) => setImmediate(r)); // let the last requests' log lines be written
  await gw.close();
  gw.log.info('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
