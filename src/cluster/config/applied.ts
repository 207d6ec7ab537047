// What follows configuration rows applied from the cluster: the services drop their caches, and
// each touched instance is started, restarted or stopped here as its shard's owner needs it (a
// deleted one also leaves the hand-off stream).
import type { ClusterHost } from '../host.ts';

export function configApplied(
  host: ClusterHost,
  dropEntriesOf: (instanceId: string) => Promise<void>,
): (tables: Set<string>, instanceIds: Set<string>) => void {
  return (tables, instanceIds) => {
    host.instances.invalidate();
    host.keys.invalidate();
    host.settings.invalidate();
    host.access.invalidate();
    host.webhooks.invalidate();
    (host.rateLimiter as { invalidate?: () => void }).invalidate?.();
    if (!tables.has('instances')) return;
    for (const id of instanceIds) {
      const inst = host.instances.get(id);
      if (inst) void host.pipeline.syncInstance(inst);
      else {
        void host.pipeline.stopInstance(id, 'deleted');
        void dropEntriesOf(id).catch((err) =>
          host.log.warn({ err: String(err) }, "cluster: removing a deleted instance's entries failed"),
        );
      }
    }
  };
}
