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
