// A Map that keeps the most recently written entries only: past `limit`, the entry written
// longest ago is dropped. For per-process memories that must stay bounded (what part of a reply a
// channel already posted, learned aliases); losing an old entry costs at most a repeated lookup.
export class RecentMap<K, V> extends Map<K, V> {
  constructor(private readonly limit: number) {
    super();
  }

  /** Writing an existing key makes it the most recent. */
  override set(key: K, value: V): this {
    super.delete(key);
    super.set(key, value);
    if (this.size > this.limit) this.delete(this.keys().next().value as K);
    return this;
  }
}
