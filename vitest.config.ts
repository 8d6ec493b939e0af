import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests import the package by its public names, served from source.
    alias: [
      { find: /^sluice\/http$/, replacement: source("./src/http/index.ts") },
      { find: /^sluice\/redis$/, replacement: source("./src/redis/index.ts") },
      { find: /^sluice\/threads$/, replacement: source("./src/threads/index.ts") },
      { find: /^sluice\/testing$/, replacement: source("./src/testing/index.ts") },
      { find: /^sluice\/otel$/, replacement: source("./src/otel/index.ts") },
      { find: /^sluice$/, replacement: source("./src/index.ts") },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
