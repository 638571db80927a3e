// Holds work until the agent's local start is done, then runs it in arrival order; after that,
// at once. The agent registers and reads the KV while its status server and policy init are still
// starting; what those deliver (our record, the mesh snapshot) must not reach the reconciler
// before the policy gate is initialised (`--policy-enforcement required` must never carry
// unfiltered traffic, agent/policy/gate.ts), so it waits here.
export class StartGate {
  private held: (() => void)[] | undefined = [];

  /** `onError`: a held function that threw (the others still run). */
  constructor(private readonly onError: (err: unknown) => void) {}

  /** Runs `fn` now if the gate is open, else when it opens (in the order given). */
  run(fn: () => void): void {
    if (this.held) this.held.push(fn);
    else fn();
  }

  /** Opens the gate: runs what was held, in order. Idempotent. */
  open(): void {
    const held = this.held;
    this.held = undefined;
    for (const fn of held ?? []) {
      try {
        fn();
      } catch (err) {
        this.onError(err);
      }
    }
  }
}
