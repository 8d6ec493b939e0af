import { parseDurationText, toMilliseconds } from "sluice";
import { describe, expect, it } from "vitest";

describe("durations", () => {
  it.each([
    [250, 250],
    ["250ms", 250],
    ["10s", 10_000],
    ["1.5s", 1_500],
    ["1m", 60_000],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
    ["6m0s", 360_000],
    ["2m52.8s", 172_800],
    ["547ms", 547],
    ["1m30s", 90_000],
    ["20 seconds", 20_000],
    ["2 min", 120_000],
    ["0", 0],
  ])("%s is %d ms", (input, expected) => {
    expect(toMilliseconds(input, "interval")).toBeCloseTo(expected, 6);
  });

  it.each(["5 parsecs", "", "ms", "1m banana", "-5s", "1e3s"])(
    "%j is refused with a RangeError naming the argument",
    (input) => {
      expect(() => toMilliseconds(input, "interval")).toThrow(RangeError);
      expect(() => toMilliseconds(input, "interval")).toThrow(/interval/);
      expect(parseDurationText(input)).toBeUndefined();
    },
  );

  it("numbers must be finite and >= 0; other types are a TypeError", () => {
    expect(() => toMilliseconds(-1, "minInterval")).toThrow(/minInterval .*-1/);
    expect(() => toMilliseconds(Number.NaN, "minInterval")).toThrow(RangeError);
    expect(() => toMilliseconds(Number.POSITIVE_INFINITY, "minInterval")).toThrow(RangeError);
    expect(() => toMilliseconds(null as unknown as number, "minInterval")).toThrow(TypeError);
  });
});
