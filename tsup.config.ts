import { defineConfig, type Options } from "tsup";

const library: Options = {
  entry: {
    index: "src/index.ts",
    http: "src/http/index.ts",
    redis: "src/redis/index.ts",
    threads: "src/threads/index.ts",
    testing: "src/testing/index.ts",
    otel: "src/otel/index.ts",
  },
  dts: true,
  splitting: true,
  sourcemap: true,
  clean: false,
  target: "node20",
  platform: "node",
  external: ["ioredis", "@opentelemetry/api"],
};

export default defineConfig([
  { ...library, format: ["esm"] },
  // CommonJS chunks go through rollup (treeshake), not tsup's default sucrase pass, which rewrites
  // `?.`, `??` and class fields into helper calls and leaves classes named `_class2`.
  { ...library, format: ["cjs"], treeshake: true },
  {
    entry: { cli: "src/cli/main.ts" },
    format: ["esm"],
    sourcemap: true,
    clean: false,
    target: "node20",
    platform: "node",
    // The OpenTelemetry packages are loaded at run time, when installed (src/cli/telemetry.ts).
    external: ["ioredis", /^@opentelemetry\//],
  },
]);
