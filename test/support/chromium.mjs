/**
 * Debian's Chromium, headless, as the tests and test/portable/run.mjs drive it through playwright-core.
 * The flags: no sandbox (CI runs as root), and no network but loopback (without the background-networking
 * flags Chromium's own connections are refused by the closed network, many at a time).
 */
import { chromium } from "playwright-core";

export const CHROMIUM_PATH = "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Starts headless Chromium; rejects if it is not installed. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
}
