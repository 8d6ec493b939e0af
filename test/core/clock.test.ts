import { systemClock } from "sluice";
import { FakeClock } from "sluice/testing";
import { afterEach, describe, expect, it, vi } from "vitest";

describe("systemClock", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("looks the global timers up at call time, so fake timers installed later take effect", () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    systemClock.setTimeout(fired, 1_000);
    vi.advanceTimersByTime(999);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledOnce();
  });

  it("a delay beyond setTimeout's 24.8-day limit fires at the right time, not at once", () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    const month = 30 * 24 * 3_600_000;
    systemClock.setTimeout(fired, month);
    vi.advanceTimersByTime(month - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledOnce();
  });

  it("a long timer can be cleared", () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    const handle = systemClock.setTimeout(fired, 2 ** 32);
    systemClock.clearTimeout(handle);
    vi.advanceTimersByTime(2 ** 33);
    expect(fired).not.toHaveBeenCalled();
  });
});

describe("FakeClock", () => {
  it("fires timers in time order, ties in creation order, and only when time passes them", () => {
    const clock = new FakeClock(100);
    const order: string[] = [];
    clock.setTimeout(() => order.push("b"), 20);
    clock.setTimeout(() => order.push("a"), 10);
    clock.setTimeout(() => order.push("c"), 20);
    const cancelled = clock.setTimeout(() => order.push("x"), 5);
    clock.clearTimeout(cancelled);
    clock.advance(15);
    expect(order).toEqual(["a"]);
    expect(clock.now()).toBe(115);
    clock.advance(5);
    expect(order).toEqual(["a", "b", "c"]);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe("systemClock.unref", () => {
  afterEach(() => {
    delete (globalThis as { Deno?: unknown }).Deno;
  });

  it("on Deno, where timers are numbers, unrefs through Deno.unrefTimer", () => {
    const unrefTimer = vi.fn();
    (globalThis as { Deno?: unknown }).Deno = { unrefTimer };
    systemClock.unref?.(42);
    expect(unrefTimer).toHaveBeenCalledWith(42);
  });

  it("a deadline already passed (a negative delay) is armed as 0, which Node 24 would otherwise warn about", () => {
    const spy = vi.spyOn(globalThis, "setTimeout");
    try {
      const handle = systemClock.setTimeout(() => undefined, -0.08);
      systemClock.clearTimeout(handle);
      expect(spy).toHaveBeenCalledWith(expect.any(Function), 0);
    } finally {
      spy.mockRestore();
    }
  });

  it("where a timer has nothing to unref it with (browsers, workers), does nothing and does not throw", () => {
    expect(() => systemClock.unref?.(42)).not.toThrow();
    expect(() => systemClock.unref?.(undefined)).not.toThrow();
  });
});
