import fc from "fast-check";
import { KeyedRateLimiter, RateLimiter, type RateLimiterOptions, type RatePermit, TimeoutError } from "sluice";
import { FakeClock } from "sluice/testing";
import { describe, expect, it } from "vitest";

const tenantOf = (key: string) => key.split("/")[0] as string;

describe("KeyedRateLimiter", () => {
  it("each key has its own limits; a key is forgotten once idle and refilled, on one unref'd timer", async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({ limits: [{ limit: 2, interval: 1_000 }], clock });
    const take = (key: string) => {
      const permit = limiter.tryAcquire(key);
      permit?.release(); // the rate is spent; the call is done at once
      return permit;
    };
    expect(take("a")).toBeDefined();
    expect(take("a")).toBeDefined();
    expect(take("a")).toBeUndefined();
    expect(take("b")).toBeDefined();
    expect(limiter.keys()).toEqual(["a", "b"]);
    clock.advance(499);
    expect(limiter.size).toBe(2); // "a" has not refilled: forgetting it would forgive its charges
    clock.advance(1_000);
    expect(limiter.size).toBe(0);
    expect(limiter.statistics()).toMatchObject({ keys: 0, granted: 3, timedOut: 0 });
  });

  it('concurrency: "auto" adapts each key on its own; the totals say "auto" for the per-key capacity', async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({ limits: [{ limit: 100, interval: 1_000 }], concurrency: "auto", clock });
    const a = await limiter.acquire("a");
    const b = await limiter.acquire("b");
    expect(limiter.statistics()).toMatchObject({ capacityPerKey: "auto", keys: 2, inUse: 2 });
    expect(limiter.statistics("a")).toMatchObject({ key: "a", inUse: 1 });
    expect(Number.isInteger(limiter.statistics("a").capacity)).toBe(true);
    a.release();
    b.release();
    expect(limiter.statistics()).toMatchObject({ inUse: 0, granted: 2 });
  });

  it("a key with a call in flight or a waiter is never forgotten", async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({ limits: [{ limit: 1, interval: 100 }], concurrency: 1, clock });
    const permit = await limiter.acquire("a");
    clock.advance(1_000);
    expect(limiter.keys()).toEqual(["a"]);
    const waiter = limiter.acquire("a");
    permit.release();
    (await waiter).release();
    expect(limiter.keys()).toEqual(["a"]);
    clock.advance(100);
    expect(limiter.size).toBe(0);
  });

  it("levels: one call charges the key, its tenant and the global level, all or nothing", async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({
      limits: [{ limit: 2, interval: "1m" }],
      levels: [
        { name: "global", limits: [{ limit: 5, interval: "1m" }] },
        { name: "tenant", limits: [{ limit: 3, interval: "1m" }], key: tenantOf },
      ],
      clock,
    });
    const held: RatePermit[] = [];
    const take = (key: string) => {
      const permit = limiter.tryAcquire(key);
      if (permit !== undefined) held.push(permit);
      return permit;
    };
    expect(take("acme/alice")).toBeDefined();
    expect(take("acme/alice")).toBeDefined();
    expect(limiter.tryAcquire("acme/alice")).toBeUndefined(); // alice's own limit
    expect(take("acme/bob")).toBeDefined();
    // acme is spent (3): bob is refused, and his own limit is not charged for it.
    expect(limiter.tryAcquire("acme/bob")).toBeUndefined();
    expect(limiter.statistics("acme/bob").remaining.requests).toBe(1);
    expect(take("globex/carol")).toBeDefined();
    expect(take("globex/carol")).toBeDefined(); // global now spent (5)
    expect(limiter.tryAcquire("initech/dave")).toBeUndefined();
    expect(limiter.statistics("initech/dave").remaining.requests).toBe(2);
    await expect(limiter.acquire("initech/dave", { timeout: 0 })).rejects.toBeInstanceOf(TimeoutError);
    // initech was refused before anything was charged: nothing to remember, so already forgotten.
    expect(limiter.levelInstances()).toEqual({ global: 1, tenant: 2 });
    // A waiter at the global level starts once the global level refills: 12 s for one request.
    const dave = limiter.acquire("initech/dave");
    clock.advance(11_999);
    expect(limiter.statistics("initech/dave").waiting).toBe(1);
    clock.advance(1);
    (await dave).release();
    clock.advance(60_000);
    expect(limiter.keys()).toEqual(["acme/alice", "acme/bob", "globex/carol"]); // in flight: kept
    for (const permit of held) permit.release();
    expect(limiter.size).toBe(0);
    expect(limiter.levelInstances()).toEqual({ global: 0, tenant: 0 });
  });

  it("pause and observe act on one key: after a 429 for alice, bob goes on; alice stays live until it is over", async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({ limits: [{ limit: 10, interval: 1_000 }], clock });
    limiter.pause("alice", 5_000, "429");
    const alice = limiter.acquire("alice");
    (await limiter.acquire("bob")).release();
    expect(limiter.statistics("alice")).toMatchObject({ waiting: 1, pauseReason: "429" });
    expect(limiter.statistics("bob").pausedUntil).toBeUndefined();
    // A pause resumes at the steady rate: the bucket is empty at its end, one request 100 ms later.
    clock.advance(5_099);
    expect(limiter.statistics("alice").waiting).toBe(1);
    clock.advance(1);
    (await alice).release();
    limiter.observe("carol", { "retry-after": "2" });
    expect(limiter.statistics("carol").pausedUntil).toBe(clock.now() + 2_000);
    expect(limiter.keys()).toEqual(["alice", "carol"]); // bob refilled long ago: forgotten
    clock.advance(60_000);
    expect(limiter.size).toBe(0);
    expect(() => limiter.pause("", 1)).toThrow(/key must not be empty/);
    // Without limits, the pause alone keeps a key: forgetting it would lift the pause.
    const spaced = new KeyedRateLimiter({ concurrency: 1, clock });
    spaced.pause("dave", 1_000);
    clock.advance(999);
    expect(spaced.keys()).toEqual(["dave"]);
    clock.advance(1);
    expect(spaced.size).toBe(0);
  });

  it("waiting at a shared level: each key's head starts once every level can pay, and nothing is over-admitted", async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({
      limits: [{ limit: 100, interval: 1_000 }],
      levels: [{ name: "global", limits: [{ limit: 2, interval: 1_000, algorithm: "sliding-window" }] }],
      clock,
    });
    const started: { key: string; at: number }[] = [];
    const calls = ["a", "b", "a", "c", "b", "a"].map((key) =>
      limiter.run(key, () => {
        started.push({ key, at: clock.now() });
      }),
    );
    for (let step = 0; step < 10; step++) await clock.advanceAsync(500);
    await Promise.all(calls);
    expect(started).toHaveLength(6);
    // The global sliding window: at most 2 starts in any [t, t + 1000).
    for (const { at } of started)
      expect(started.filter((other) => other.at >= at && other.at < at + 1_000).length).toBeLessThanOrEqual(2);
    // Each key's own calls in order of arrival.
    expect(started.filter(({ key }) => key === "a").map(({ at }) => at)).toEqual(
      [...started.filter(({ key }) => key === "a").map(({ at }) => at)].sort((x, y) => x - y),
    );
  });

  it("a cost above a level's burst rejects at once, naming the level and its key", async () => {
    const limiter = new KeyedRateLimiter({
      name: "api",
      limits: [{ limit: 20_000, interval: "1m", unit: "tokens" }],
      levels: [{ name: "tenant", limits: [{ limit: 10_000, interval: "1m", unit: "tokens" }], key: tenantOf }],
    });
    await expect(limiter.acquire("acme/alice", { cost: { tokens: 15_000 } })).rejects.toThrow(
      'cost 15000 tokens is above the burst 10000 of the limit 10000 tokens per 60000 ms of level "tenant" key "acme" of keyed rate limiter "api" (shared by rate limiter "api" key "acme/alice")',
    );
    await expect(limiter.acquire("acme/alice", { cost: { tokens: 25_000 } })).rejects.toThrow(
      /of rate limiter "api" key "acme\/alice"; it could never be granted/,
    );
    expect(limiter.size).toBe(0);
  });

  it("bad levels and level keys are refused naming the level", async () => {
    expect(() => new KeyedRateLimiter({ levels: [{ name: "t", limits: [{ limit: 0, interval: 1 }] }] })).toThrow(
      "levels[0].limits[0].limit must be a finite number > 0; got 0",
    );
    expect(() => new KeyedRateLimiter({ levels: [{ name: "t", limits: [] }] })).toThrow(
      /levels\[0\]\.limits must be a non-empty array/,
    );
    expect(
      () =>
        new KeyedRateLimiter({
          levels: [
            { name: "t", limits: [{ limit: 1, interval: 1 }] },
            { name: "t", limits: [{ limit: 1, interval: 1 }] },
          ],
        }),
    ).toThrow(/levels\[1\]\.name "t" names another level too/);
    expect(
      () => new KeyedRateLimiter({ levels: [{ name: "t", limits: [{ limit: 1, interval: 1 }], kye: 1 }] } as never),
    ).toThrow(/did you mean "key"/);
    const limiter = new KeyedRateLimiter({
      levels: [{ name: "tenant", limits: [{ limit: 1, interval: 1 }], key: () => "" }],
    });
    await expect(limiter.acquire("alice")).rejects.toThrow(
      /levels\[0\]\.key\("alice"\) \(level "tenant"\) must not be empty/,
    );
    expect(limiter.size).toBe(0);
    expect(limiter.levelInstances()).toEqual({ tenant: 0 });
  });

  it("a key stays light (no RateLimiter of its own) until a caller must wait, and is light again once forgotten", async () => {
    const clock = new FakeClock();
    const limiter = new KeyedRateLimiter({ limits: [{ limit: 2, interval: 1_000 }], clock });
    const first = await limiter.acquire("a", { cost: 2 });
    first.settle(1); // refunded on the light path
    expect(limiter.statistics("a")).toMatchObject({ inUse: 1, granted: 1, remaining: { requests: 1 } });
    expect(limiter.fullKeys()).toBe(0);
    (await limiter.acquire("a")).release();
    const waiter = limiter.acquire("a");
    expect(limiter.fullKeys()).toBe(1); // it must wait: the key's full limiter took over its bucket
    expect(limiter.statistics("a")).toMatchObject({ inUse: 1, waiting: 1, granted: 2, settled: { calls: 1 } });
    clock.advance(499);
    expect(limiter.statistics("a").waiting).toBe(1);
    clock.advance(1);
    (await waiter).release();
    first.release(); // a light permit, released to the limiter that adopted it
    expect(limiter.statistics("a")).toMatchObject({ inUse: 0, waiting: 0, granted: 3 });
    clock.advance(1_000);
    expect(limiter.size).toBe(0);
    (await limiter.acquire("a")).release();
    expect(limiter.fullKeys()).toBe(0);
    expect(limiter.statistics()).toMatchObject({ granted: 4, keys: 1 });
  });

  it("a limit that can never pay one request refuses it on every path, as a RateLimiter does", async () => {
    const limiter = new KeyedRateLimiter({ limits: [{ limit: 0.5, interval: 1_000, algorithm: "sliding-window" }] });
    expect(() => limiter.tryAcquire("a")).toThrow(/cost 1 requests is above the limit 0\.5/);
    await expect(limiter.acquire("a")).rejects.toThrow(/cost 1 requests is above the limit 0\.5/);
    await expect(limiter.run("a", () => 1)).rejects.toThrow(/it could never be granted/);
    expect(limiter.statistics()).toMatchObject({ granted: 0, rejected: 2, keys: 0 });
  });

  it("property: a key's light path and its full limiter grant at the same instants as a plain RateLimiter", async () => {
    type Step =
      | { op: "acquire"; cost: number; weight: number }
      | { op: "try"; cost: number }
      | { op: "release"; which: number }
      | { op: "settle"; which: number; cost: number }
      | { op: "advance"; ms: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({
        op: fc.constant("acquire" as const),
        cost: fc.integer({ min: 0, max: 3 }),
        weight: fc.integer({ min: 1, max: 2 }),
      }),
      fc.record({ op: fc.constant("try" as const), cost: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ op: fc.constant("release" as const), which: fc.nat() }),
      fc.record({ op: fc.constant("settle" as const), which: fc.nat(), cost: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ op: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 150 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 60 }), fc.boolean(), async (steps, window) => {
        const options = (clock: FakeClock): RateLimiterOptions => ({
          limits: [
            { limit: 4, interval: 100, burst: 3 },
            window
              ? { limit: 5, interval: 120, unit: "tokens", algorithm: "sliding-window" }
              : { limit: 5, interval: 120, unit: "tokens" },
          ],
          concurrency: 3,
          minInterval: 10,
          clock,
        });
        const sides = [0, 1].map(() => {
          const clock = new FakeClock();
          return { clock, grants: [] as [number, number][], held: [] as RatePermit[] };
        });
        const [keyedSide, plainSide] = sides as [(typeof sides)[0], (typeof sides)[0]];
        const keyed = new KeyedRateLimiter(options(keyedSide.clock));
        const plain = new RateLimiter(options(plainSide.clock));
        let calls = 0;
        for (const s of steps) {
          if (s.op === "acquire" || s.op === "try") {
            const call = calls++;
            const cost = { requests: 1, tokens: s.cost };
            for (const [side, acquire] of [
              [keyedSide, (o: object) => (s.op === "try" ? keyed.tryAcquire("k", o) : keyed.acquire("k", o))],
              [plainSide, (o: object) => (s.op === "try" ? plain.tryAcquire(o) : plain.acquire(o))],
            ] as const) {
              const granted = (permit: RatePermit | undefined) => {
                if (permit === undefined) return;
                side.grants.push([call, side.clock.now()]);
                side.held.push(permit);
              };
              const outcome = acquire(s.op === "try" ? { cost } : { cost, weight: s.weight });
              if (outcome instanceof Promise) outcome.then(granted);
              else granted(outcome);
            }
          }
          for (const side of sides) {
            const permit = side.held[(s as { which: number }).which % Math.max(1, side.held.length)];
            if (s.op === "release" && permit !== undefined) {
              side.held.splice(side.held.indexOf(permit), 1);
              permit.release();
            }
            if (s.op === "settle" && permit !== undefined) permit.settle({ tokens: s.cost });
            if (s.op === "advance") await side.clock.advanceAsync(s.ms);
            else await side.clock.advanceAsync(0);
          }
          expect(keyedSide.grants).toEqual(plainSide.grants);
          const { inUse, waiting, remaining } = plain.statistics();
          expect(keyed.statistics("k")).toMatchObject({ inUse, waiting, remaining });
        }
      }),
      { numRuns: 100 },
    );
  });

  it("property: admitted exactly when every level has room in its sliding window; refusals charge nothing", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            advance: fc.integer({ min: 0, max: 40 }),
            tenant: fc.constantFrom("a", "b", "c"),
            user: fc.constantFrom("1", "2", "3"),
            cost: fc.integer({ min: 0, max: 3 }),
          }),
          { maxLength: 120 },
        ),
        (steps) => {
          const clock = new FakeClock();
          const window = (limit: number) => ({ limit, interval: 100, algorithm: "sliding-window" as const });
          const limiter = new KeyedRateLimiter({
            limits: [window(4)],
            levels: [
              { name: "global", limits: [window(9)] },
              { name: "tenant", limits: [window(6)], key: tenantOf },
            ],
            clock,
          });
          const admitted: { at: number; key: string; tenant: string; cost: number }[] = [];
          const used = (at: number, match: (entry: (typeof admitted)[number]) => boolean) =>
            admitted.filter((entry) => entry.at > at - 100 && match(entry)).reduce((sum, entry) => sum + entry.cost, 0);
          for (const { advance, tenant, user, cost } of steps) {
            clock.advance(advance);
            const key = `${tenant}/${user}`;
            const at = clock.now();
            const fits =
              used(at, (entry) => entry.key === key) + cost <= 4 &&
              used(at, (entry) => entry.tenant === tenant) + cost <= 6 &&
              used(at, () => true) + cost <= 9;
            const permit: RatePermit | undefined = limiter.tryAcquire(key, { cost });
            expect(permit !== undefined).toBe(fits);
            if (permit !== undefined) {
              admitted.push({ at, key, tenant, cost });
              permit.release();
            }
          }
          clock.advance(1_000);
          expect(limiter.size).toBe(0);
          expect(limiter.levelInstances()).toEqual({ global: 0, tenant: 0 });
        },
      ),
      { numRuns: 200 },
    );
  });
});
