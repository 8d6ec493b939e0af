/**
 * examples/browser: the page limits its own fetch calls in headless Chromium (Debian's `chromium`),
 * loading `sluice` and `sluice/http` from the built package through an import map, with no bundler.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startExampleServer } from "../examples/browser/server.mjs";
import { CHROMIUM_PATH, launchChromium } from "./support/chromium.mjs";
import { normaliseCode } from "./support/excerpts.js";

const root = fileURLToPath(new URL("..", import.meta.url));
let browser: Browser | undefined;

beforeAll(async () => {
  // The page imports the built package, as the examples do.
  if (!existsSync(`${root}dist/index.js`)) execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
  if (existsSync(CHROMIUM_PATH)) browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!existsSync(CHROMIUM_PATH))("examples/browser", () => {
  it("loads every item with at most 3 requests in flight, and waits out the server's 429", async () => {
    const server = await startExampleServer();
    try {
      const page = await (browser as Browser).newPage();
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(`console: ${message.text()}`);
      });
      page.on("request", (request) => {
        if (!request.url().startsWith(`${server.origin}/`)) problems.push(`left the page's server: ${request.url()}`);
      });
      await page.goto(server.url);
      await page.waitForSelector("body[data-done='true']", { timeout: 20_000 });
      expect(await page.textContent("#status")).toBe("12 of 12 loaded (1 rate-limited, 1 retried)");
      expect(await page.locator("#items li").count()).toBe(12);
      expect(server.stats.mostInFlight).toBeLessThanOrEqual(3);
      expect(server.stats.mostInFlight).toBe(3);
      expect(server.stats).toMatchObject({ requests: 13, rateLimited: 1, inFlight: 0 });
      // The 429 (a failed resource load, which Chromium logs as an error) is the only complaint.
      expect(problems.filter((problem) => !problem.includes("429"))).toEqual([]);
    } finally {
      await server.close();
    }
  });
});

describe("docs/runtimes.md", () => {
  const normalise = normaliseCode;
  const page = readFileSync(`${root}docs/runtimes.md`, "utf8");
  const blocks = [...page.matchAll(/```(?:html|js)\n([\s\S]*?)```/g)].map((match) => normalise(match[1] as string));
  const sources = ["index.html", "app.js"].map((file) =>
    normalise(readFileSync(`${root}examples/browser/${file}`, "utf8")),
  );

  it("shows code from the tested browser example, nothing else", () => {
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks)
      expect(
        sources.some((source) => source.includes(block)),
        block,
      ).toBe(true);
  });
});
