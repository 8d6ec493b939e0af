/**
 * How an error message shows the value it refuses: short and safe for any value (a megabyte string, a
 * function, an object), and the same everywhere in sluice. Its own module: it is not about durations.
 */

/** A short, safe rendering of any value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === "string") {
    // An error message names the value; it need not carry a megabyte of it.
    return value.length > 80
      ? `${JSON.stringify(value.slice(0, 80))}… (${value.length} characters)`
      : JSON.stringify(value);
  }
  if (typeof value === "bigint") return `${value}n`;
  // String(fn) would print the function's whole source.
  if (typeof value === "function") return value.name === "" ? "a function" : `the function ${value.name}`;
  if (value === null || typeof value !== "object") return String(value);
  if (Array.isArray(value)) return "an array";
  return `an object (${Object.prototype.toString.call(value)})`;
}
