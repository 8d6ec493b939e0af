/**
 * Rate-limit response headers, parsed into one shape whatever the provider.
 *
 * Pure functions of (headers, wall-clock now): `RateLimiter.observe()` uses them to tighten its budget and
 * the HTTP wrapper uses them to honour `Retry-After`. Times come back as wall-clock milliseconds
 * (`Date.now()` scale) because providers send wall-clock dates (Anthropic's RFC 3339 resets, HTTP dates
 * in `Retry-After`); relative values (OpenAI's `6m0s`, IETF's delta seconds) are added to `nowMs`.
 *
 * Understood formats:
 * - OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go durations
 *   (`6m0s`, `547ms`, `2m52.8s`); any other suffix becomes a unit of that name. Without a suffix
 *   (GitHub and many others) the unit is `requests` and a bare-number reset is delta seconds, or epoch
 *   seconds when it is larger than 10^9.
 * - Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
 *   resets as RFC 3339 times.
 * - IETF `draft-ietf-httpapi-ratelimit-headers`: the structured-field form of drafts 08+
 *   (`RateLimit-Policy: "default";q=100;w=60` and `RateLimit: "default";r=50;t=30`), the dictionary form of
 *   draft 07 (`RateLimit: limit=100, remaining=50, reset=30`), and the separate
 *   `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` fields of the earlier drafts.
 * - `Retry-After` (delta seconds or an HTTP date) and `retry-after-ms` (milliseconds, which wins when both
 *   are present because it is the more precise).
 *
 * When several sources report the same unit, the tightest (lowest `remaining`) wins: the result only
 * ever serves to slow down.
 */
import { parseDurationText } from "./duration.js";

/** What a response said about one unit's budget. Every field is optional: providers send subsets. */
export interface ObservedRateLimit {
  /** The server's limit for this unit, in its own window. */
  limit?: number;
  /** Budget left right now, in this unit. */
  remaining?: number;
  /** When the budget is back to full (or the window resets), in wall-clock ms (`Date.now()` scale). */
  resetAt?: number;
  /** The window the limit applies to, in ms, when the server says (IETF `w`). */
  window?: number;
}

/** Everything {@link parseRateLimitHeaders} found in one set of response headers. */
export interface RateLimitHeaders {
  /** Per unit (`requests`, `tokens`, `input-tokens`, ...), what the server reported. */
  units: Record<string, ObservedRateLimit>;
  /** How long the server asked us to wait before the next request (`Retry-After`, `retry-after-ms`). */
  retryAfterMs?: number;
}

/** Response headers as fetch (`Headers`) or Node (`IncomingHttpHeaders`) give them. */
export type HeaderInput = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

/** Above this, a bare-number reset is a Unix time in seconds rather than a delay (2001-09-09). */
const EPOCH_SECONDS_THRESHOLD = 1e9;

/**
 * Parses rate-limit headers from any provider sluice knows (see the module comment) into one shape.
 *
 * @param headers - the response headers; names are matched case-insensitively.
 * @param nowMs - the wall-clock time the response arrived, `Date.now()` scale; relative resets are
 *   added to it.
 *
 * @example
 * ```ts
 * import { parseRateLimitHeaders } from "sluice";
 * const found = parseRateLimitHeaders(
 *   { "x-ratelimit-remaining-tokens": "149984", "x-ratelimit-reset-tokens": "6m0s" },
 *   Date.now(),
 * );
 * found.units.tokens; // { remaining: 149984, resetAt: <now + 360000> }
 * ```
 */
export function parseRateLimitHeaders(headers: HeaderInput, nowMs: number): RateLimitHeaders {
  const fields = normalize(headers);
  const units: Record<string, ObservedRateLimit> = {};

  // OpenAI, GitHub and friends: x-ratelimit-<field>[-<unit>].
  // Anthropic: anthropic-ratelimit-<unit>-<field>.
  const vendor: Record<string, ObservedRateLimit> = {};
  for (const [name, value] of fields) {
    let unit: string;
    let field: string;
    let match = /^x-ratelimit-(limit|remaining|reset)(?:-(.+))?$/.exec(name);
    if (match !== null) {
      field = match[1] as string;
      unit = match[2] ?? "requests";
    } else {
      match = /^anthropic-ratelimit-(.+)-(limit|remaining|reset)$/.exec(name);
      if (match === null) continue;
      unit = match[1] as string;
      field = match[2] as string;
    }
    const observed = (vendor[unit] ??= {});
    if (field === "reset") {
      const resetAt = parseReset(value, nowMs);
      if (resetAt !== undefined) observed.resetAt = resetAt;
    } else {
      const amount = parseAmount(value);
      if (amount !== undefined) observed[field as "limit" | "remaining"] = amount;
    }
  }
  for (const [unit, observed] of Object.entries(vendor)) merge(units, unit, observed);

  for (const [unit, observed] of parseIetf(fields, nowMs)) merge(units, unit, observed);

  const result: RateLimitHeaders = { units };
  const retryAfterMs = parseRetryAfterFields(fields, nowMs);
  if (retryAfterMs !== undefined) result.retryAfterMs = retryAfterMs;
  return result;
}

/**
 * Parses one `Retry-After` value — delta seconds (`"120"`, also `"1.5"`) or an HTTP date
 * (`"Wed, 21 Oct 2015 07:28:00 GMT"`) — into milliseconds from `nowMs`, never negative. Returns
 * `undefined` for anything else.
 *
 * @example
 * ```ts
 * import { parseRetryAfter } from "sluice";
 * parseRetryAfter("20", Date.now()); // 20000
 * ```
 */
export function parseRetryAfter(value: string, nowMs: number): number | undefined {
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return finite(Number(text) * 1000);
  // A bare number that is not a plain non-negative decimal (negative, exponent) is not a date either.
  if (/^[-+.\d]/.test(text) && !/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** Lower-cased header names to values; repeated headers are joined with ", " as HTTP defines. */
function normalize(headers: HeaderInput): Map<string, string> {
  const fields = new Map<string, string>();
  if (typeof Headers !== "undefined" && headers instanceof Headers) {
    headers.forEach((value, name) => {
      fields.set(name.toLowerCase(), value);
    });
    return fields;
  }
  if (typeof headers !== "object" || headers === null) return fields;
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (typeof value === "string") fields.set(name.toLowerCase(), value);
    else if (typeof value === "number") fields.set(name.toLowerCase(), String(value));
    else if (Array.isArray(value)) fields.set(name.toLowerCase(), value.join(", "));
  }
  return fields;
}

/** A non-negative finite number, or undefined. */
function parseAmount(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^\d+(\.\d+)?$/.test(trimmed)) return undefined;
  return finite(Number(trimmed));
}

/**
 * `value` if finite, else undefined. Digits alone do not make a number finite ("9" × 400 is Infinity),
 * and an Infinity from a header would pause or cap a limiter forever (or make `pause()` throw).
 */
function finite(value: number): number | undefined {
  return Number.isFinite(value) ? value : undefined;
}

/**
 * A reset in any of the forms providers send, as wall-clock ms: a Go duration (`"6m0s"`, `"547ms"`),
 * delta seconds (`"30"`), epoch seconds (`"1700000000"`), or a date (`"2024-06-03T12:34:56Z"`).
 */
function parseReset(text: string, nowMs: number): number | undefined {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    const seconds = Number(trimmed);
    return finite(seconds > EPOCH_SECONDS_THRESHOLD ? seconds * 1000 : nowMs + seconds * 1000);
  }
  const duration = parseDurationText(trimmed);
  if (duration !== undefined && Number.isFinite(duration)) return finite(nowMs + duration);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : at;
}

/** `retry-after-ms` if present and valid (the more precise), else `Retry-After`. */
function parseRetryAfterFields(fields: Map<string, string>, nowMs: number): number | undefined {
  const precise = fields.get("retry-after-ms");
  if (precise !== undefined) {
    const ms = parseAmount(precise);
    if (ms !== undefined) return ms;
  }
  const coarse = fields.get("retry-after");
  return coarse === undefined ? undefined : parseRetryAfter(coarse, nowMs);
}

/** Keeps, per unit, the tightest report; fields the tighter one lacks are filled from the other. */
function merge(units: Record<string, ObservedRateLimit>, unit: string, observed: ObservedRateLimit): void {
  if (Object.keys(observed).length === 0) return;
  const existing = units[unit];
  if (existing === undefined) {
    units[unit] = { ...observed };
    return;
  }
  const observedIsTighter =
    observed.remaining !== undefined && (existing.remaining === undefined || observed.remaining < existing.remaining);
  const [tighter, looser] = observedIsTighter ? [observed, existing] : [existing, observed];
  units[unit] = { ...looser, ...tighter };
}

// ---------------------------------------------------------------------------------------------------
// IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers), all three generations.

/** One list member of a structured field: its bare value (token, string or number) and parameters. */
interface Member {
  value: string;
  parameters: Map<string, string>;
}

function parseIetf(fields: Map<string, string>, nowMs: number): [string, ObservedRateLimit][] {
  const found: [string, ObservedRateLimit][] = [];
  const combined = fields.get("ratelimit");
  const policyField = fields.get("ratelimit-policy");
  const policies = policyField === undefined ? [] : parseList(policyField);

  if (combined !== undefined) {
    const members = parseList(combined);
    const isDictionary = members.some((member) => /^(limit|remaining|reset)=/i.test(member.value));
    if (isDictionary) {
      // Draft 07: `RateLimit: limit=100, remaining=50, reset=30`, window from `RateLimit-Policy: 100;w=60`.
      const observed: ObservedRateLimit = {};
      for (const member of members) {
        const [key, raw] = member.value.split("=", 2) as [string, string | undefined];
        const amount = raw === undefined ? undefined : parseAmount(unquote(raw));
        if (amount === undefined) continue;
        const name = key.trim().toLowerCase();
        if (name === "limit") observed.limit = amount;
        else if (name === "remaining") observed.remaining = amount;
        else if (name === "reset") {
          const resetAt = finite(nowMs + amount * 1000);
          if (resetAt !== undefined) observed.resetAt = resetAt;
        }
      }
      const window = windowOf(policies[0]);
      if (window !== undefined) observed.window = window;
      found.push(["requests", observed]);
    } else {
      // Drafts 08+: named policies; `RateLimit: "default";r=50;t=30` refers to `RateLimit-Policy: "default";q=100;w=60`.
      const byName = new Map(policies.map((policy) => [unquote(policy.value), policy]));
      for (const member of members) {
        const policy = byName.get(unquote(member.value));
        const observed: ObservedRateLimit = {};
        const remaining = optionalAmount(member.parameters.get("r"));
        if (remaining !== undefined) observed.remaining = remaining;
        const reset = optionalAmount(member.parameters.get("t"));
        const resetAt = reset === undefined ? undefined : finite(nowMs + reset * 1000);
        if (resetAt !== undefined) observed.resetAt = resetAt;
        const quota = optionalAmount(policy?.parameters.get("q"));
        if (quota !== undefined) observed.limit = quota;
        const window = windowOf(policy);
        if (window !== undefined) observed.window = window;
        const unit = unquote(policy?.parameters.get("qu") ?? member.parameters.get("qu") ?? "requests");
        found.push([unit, observed]);
      }
    }
  }

  // Drafts up to 06: separate fields; `RateLimit-Limit: 10, 10;w=1` carries the window in parameters.
  const limitField = fields.get("ratelimit-limit");
  const remainingField = fields.get("ratelimit-remaining");
  const resetField = fields.get("ratelimit-reset");
  if (limitField !== undefined || remainingField !== undefined || resetField !== undefined) {
    const observed: ObservedRateLimit = {};
    const limitMembers = limitField === undefined ? [] : parseList(limitField);
    const limit = optionalAmount(limitMembers[0]?.value);
    if (limit !== undefined) observed.limit = limit;
    const remaining = optionalAmount(remainingField === undefined ? undefined : parseList(remainingField)[0]?.value);
    if (remaining !== undefined) observed.remaining = remaining;
    const reset = optionalAmount(resetField === undefined ? undefined : parseList(resetField)[0]?.value);
    const resetAt = reset === undefined ? undefined : finite(nowMs + reset * 1000);
    if (resetAt !== undefined) observed.resetAt = resetAt;
    const window = windowOf(limitMembers.find((member) => member.parameters.has("w")) ?? policies[0]);
    if (window !== undefined) observed.window = window;
    found.push(["requests", observed]);
  }
  return found;
}

function windowOf(member: Member | undefined): number | undefined {
  const seconds = optionalAmount(member?.parameters.get("w"));
  return seconds === undefined ? undefined : seconds * 1000;
}

function optionalAmount(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseAmount(unquote(text));
}

function unquote(text: string): string {
  const trimmed = text.trim();
  return trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"') ? trimmed.slice(1, -1) : trimmed;
}

/**
 * A lenient reading of an RFC 8941 list: members separated by commas, parameters by semicolons, both
 * ignored inside double quotes. Lenient because servers in the wild do not all follow the grammar.
 */
function parseList(text: string): Member[] {
  const members: Member[] = [];
  for (const part of splitOutsideQuotes(text, ",")) {
    const [value, ...parameters] = splitOutsideQuotes(part, ";");
    if (value === undefined || value.trim() === "") continue;
    const member: Member = { value: value.trim(), parameters: new Map() };
    for (const parameter of parameters) {
      const equals = parameter.indexOf("=");
      const key = (equals === -1 ? parameter : parameter.slice(0, equals)).trim().toLowerCase();
      if (key !== "") member.parameters.set(key, equals === -1 ? "?1" : parameter.slice(equals + 1).trim());
    }
    members.push(member);
  }
  return members;
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (char === '"') quoted = !quoted;
    if (char === separator && !quoted) {
      parts.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}
