// Items pushed by a producer (a subscription's callback, a polling loop) handed to one consumer as
// an async iterator: each item once, in order, then "done" once the queue is closed and drained.
// One implementation for the agent's brokered watch (inbox deliveries) and its catch-up watch (pages
// of direct gets), which had copied it.

export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private waiter: (() => void) | undefined;
  private isClosed = false;

  /** Adds an item for the consumer (ignored once closed). */
  push(item: T): void {
    if (this.isClosed) return;
    this.items.push(item);
    this.wake();
  }

  /** No more items: the iterator ends after those already queued. */
  close(): void {
    this.isClosed = true;
    this.wake();
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** The consumer's iterator; `onReturn` runs when it stops early (break, return, throw in a for-await). */
  iterator(onReturn: () => void): AsyncIterator<T> {
    return {
      next: async (): Promise<IteratorResult<T>> => {
        for (;;) {
          const item = this.items.shift();
          if (item !== undefined) return { value: item, done: false };
          if (this.isClosed) return { value: undefined, done: true };
          await new Promise<void>((resolve) => (this.waiter = resolve));
        }
      },
      return: (): Promise<IteratorResult<T>> => {
        onReturn();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
