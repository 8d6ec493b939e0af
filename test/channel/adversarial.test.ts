import { Channel } from "sluice";
import { describe, expect, it } from "vitest";

describe("Channel: bad options", () => {
  it("a null options object throws a TypeError that names options and the value", () => {
    expect(() => new Channel(1, null as never)).toThrow("options must be an object; got null");
    expect(() => new Channel(1, 5 as never)).toThrow("options must be an object; got 5");
  });
});

describe("Channel: order of waiting senders", () => {
  it("serves waiting senders by priority first, then arrival (as the TSDoc says)", async () => {
    const channel = new Channel<string>(0);
    const sends = [
      channel.send("low-1", { priority: 0 }),
      channel.send("high", { priority: 1 }),
      channel.send("low-2", { priority: 0 }),
    ];
    const received = [await channel.receive(), await channel.receive(), await channel.receive()];
    await Promise.all(sends);
    expect(received).toEqual(["high", "low-1", "low-2"]);
  });
});

describe("Channel: an abort that came first wins", () => {
  it("a value sent by an earlier abort listener of the same signal is not handed to the aborted receiver", async () => {
    const channel = new Channel<string>(1);
    const controller = new AbortController();
    controller.signal.addEventListener("abort", () => channel.trySend("sent on abort"));
    const aborted = channel.receive({ signal: controller.signal }).then(
      (value) => value,
      (error: unknown) => error,
    );
    controller.abort(new Error("gone"));
    expect(await aborted).toMatchObject({ message: "gone" });
    // The value waits in the buffer for a receiver who is still there.
    expect(await channel.receive()).toBe("sent on abort");
  });

  it("a receive made by an earlier abort listener of the same signal does not take the aborted sender's value", async () => {
    const channel = new Channel<string>(0);
    const controller = new AbortController();
    let received: unknown;
    controller.signal.addEventListener("abort", () => {
      received = channel.tryReceive();
    });
    const aborted = channel.send("withdrawn", { signal: controller.signal }).then(
      () => "sent",
      (error: unknown) => error,
    );
    controller.abort(new Error("gone"));
    expect(await aborted).toMatchObject({ message: "gone" });
    expect(received).toEqual({ ok: false, closed: false });
  });
});
