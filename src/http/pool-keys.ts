/**
 * The keys of a key pool, checked: at least one, each with a credential, no two alike, and each with
 * the limiter it is routed by. Kept apart from the pool's routing so that each reads on its own.
 */
import { checkOptionNames, optionNames } from "../core/arguments.js";
import { describe } from "../core/describe.js";
import type { Limiter } from "../core/limiter.js";
import { RateLimiter } from "../core/rate-limiter.js";
import type { Cost } from "./cost.js";
import type { PoolKey } from "./key-pool.js";

/** The limiter query a key is routed by, when its limiter has it (`RateLimiter.readyIn`). */
export interface Routable {
  readyIn?(cost?: Cost): number;
}

const POOL_KEY_OPTIONS = /* @__PURE__ */ optionNames<PoolKey>({
  name: true,
  apiKey: true,
  headers: true,
  baseURL: true,
  limiter: true,
});

/** A key as the pool keeps it, checked. */
export interface CheckedKey {
  name: string;
  limiter: Limiter & Routable;
  credentials: Record<string, string>;
  baseURL: URL | undefined;
}

/** Checks the keys: at least one, each with a credential, no two alike. */
export function checkKeys(keys: unknown, apiKeyHeader: string): CheckedKey[] {
  if (!Array.isArray(keys)) throw new TypeError(`keys must be an array of keys; got ${describe(keys)}`);
  if (keys.length === 0) throw new RangeError("keys must name at least one key; got an empty array");
  const checked: CheckedKey[] = [];
  const seen = new Map<string, number>();
  for (const [index, key] of (keys as unknown[]).entries()) {
    const where = `keys[${index}]`;
    if (typeof key !== "object" || key === null) {
      throw new TypeError(`${where} must be an object with apiKey or headers; got ${describe(key)}`);
    }
    checkOptionNames(key, POOL_KEY_OPTIONS, where);
    const { apiKey, headers, baseURL, limiter, name } = key as PoolKey;
    if (apiKey !== undefined && (typeof apiKey !== "string" || apiKey.trim() === "")) {
      throw new TypeError(
        `${where}.apiKey must be a non-empty string; got ${describe(apiKey === "" ? "" : typeof apiKey)}`,
      );
    }
    const credentials: Record<string, string> = {};
    if (headers !== undefined) {
      if (typeof headers !== "object" || headers === null || Array.isArray(headers)) {
        throw new TypeError(`${where}.headers must be an object of header values; got ${describe(headers)}`);
      }
      for (const [header, value] of Object.entries(headers)) {
        if (typeof value !== "string")
          throw new TypeError(`${where}.headers["${header}"] must be a string; got ${describe(value)}`);
        credentials[header.toLowerCase()] = value;
      }
    }
    if (apiKey !== undefined)
      credentials[apiKeyHeader] = apiKeyHeader === "authorization" ? `Bearer ${apiKey}` : apiKey;
    if (Object.keys(credentials).length === 0) {
      throw new TypeError(`${where} has no credential: give it an apiKey or headers`);
    }
    let url: URL | undefined;
    if (baseURL !== undefined) {
      if (typeof baseURL !== "string" || !URL.canParse(baseURL)) {
        throw new TypeError(`${where}.baseURL must be an absolute URL; got ${describe(baseURL)}`);
      }
      url = new URL(baseURL);
    }
    if (
      limiter !== undefined &&
      (typeof limiter !== "object" || limiter === null || typeof limiter.acquire !== "function")
    ) {
      throw new TypeError(`${where}.limiter must be a Limiter (an object with acquire()); got ${describe(limiter)}`);
    }
    if (name !== undefined && (typeof name !== "string" || name === "")) {
      throw new TypeError(`${where}.name must be a non-empty string; got ${describe(name)}`);
    }
    const shown = `${apiKey === undefined ? "headers" : mask(apiKey)}${url === undefined ? "" : ` at ${url.origin}${url.pathname.replace(/\/$/, "")}`}`;
    // The index keeps default names apart when two keys mask alike.
    const label = name ?? `key ${index + 1} (${shown})`;
    const identity = JSON.stringify([Object.entries(credentials).sort(), url?.href]);
    const twin = seen.get(identity);
    if (twin !== undefined) {
      throw new RangeError(`${where} repeats keys[${twin}] (${shown}): the same credential and endpoint twice`);
    }
    seen.set(identity, index);
    const sameName = checked.findIndex((other) => other.name === label);
    if (sameName !== -1) throw new RangeError(`${where} has the name of keys[${sameName}]: ${JSON.stringify(label)}`);
    const sameLimiter = checked.findIndex((other) => other.limiter === limiter);
    if (limiter !== undefined && sameLimiter !== -1) {
      throw new RangeError(`${where}.limiter is keys[${sameLimiter}].limiter: each key needs a limiter of its own`);
    }
    checked.push({
      name: label,
      limiter: (limiter ?? new RateLimiter()) as Limiter & Routable,
      credentials,
      baseURL: url,
    });
  }
  return checked;
}

/** An API key as messages show it: the first 3 and last 4 characters, as OpenAI's errors do. */
function mask(apiKey: string): string {
  return apiKey.length <= 10 ? `${apiKey.slice(0, 3)}...` : `${apiKey.slice(0, 3)}...${apiKey.slice(-4)}`;
}
