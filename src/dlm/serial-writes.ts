// One operation at a time per key (a lock-cell row of this node), in call order. The lock manager
// writes a whole cell for any change of one of its entries: two writes of one cell in flight at
// once, each built from the memory state before the other's landed, lose one update (review 4
// finding 1). Serialized, each write is built when its turn comes, from the state the previous
// one left, so none builds on a copy that a write in flight makes stale.
//
// An idle key runs its operation inside the call (the common case: the lock manager's writes are
// in-call I/O, and a chain would cost every write a turn of promises it does not need).

export class SerialByKey {
  /** The last operation queued per key, settled either way; absent when the key is idle. */
  private readonly tails = new Map<number, Promise<void>>();

  /** Runs `op` after every operation queued before on `key` has settled (at once when none is). */
  run<T>(key: number, op: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key);
    let result: Promise<T>;
    if (prev !== undefined) result = prev.then(op);
    else {
      try {
        result = op();
      } catch (err) {
        result = Promise.reject(err as Error);
      }
    }
    const tail = result.then(settled, settled);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once every operation queued so far, on any key, has settled. */
  async idle(): Promise<void> {
    await Promise.all(this.tails.values());
  }
}

function settled(): void {}
