import { defineConfig } from "tsup";

export default defineConfig([
  {
    entry: {
      index: "src/index.ts",
      http: "src/http/index.ts",
      redis: "src/redis/index.ts",
      threads: "src/threads/index.ts",
      testing: "src/testing/index.ts",
    },
    format: ["esm", "cjs"],
    dts: true,
    splitting: true,
    sourcemap: true,
    clean: false,
    target: "node20",
    platform: "node",
    external: ["ioredis"],
  },
  {
    entry: { cli: "src/cli/main.ts" },
    format: ["esm"],
    sourcemap: true,
    clean: false,
    target: "node20",
    platform: "node",
    external: ["ioredis"],
  },
]);
