#!/usr/bin/env node
// Usage: node scripts/complete-lockfile.mjs [package-lock.json] — run after every dependency change.
// Adds lock entries for optional platform packages that this registry cannot serve, so `npm ci`
// accepts the lock. The entries carry os/cpu/libc inferred from the package name, so npm skips them
// on every platform they are not for (as it would skip the real ones).
import { readFileSync, writeFileSync } from "node:fs";

const lockPath = process.argv[2] ?? "package-lock.json";
const lock = JSON.parse(readFileSync(lockPath, "utf8"));
const packages = lock.packages;
let added = 0;
for (const [path, entry] of Object.entries(packages)) {
  for (const [name, spec] of Object.entries(entry.optionalDependencies ?? {})) {
    const base = path === "" ? "" : `${path}/`;
    const candidates = [`${base}node_modules/${name}`, `node_modules/${name}`];
    if (candidates.some((candidate) => packages[candidate])) continue;
    const platform = name.split("/").pop();
    const os =
      ["android", "darwin", "freebsd", "linux", "netbsd", "openbsd", "sunos", "win32", "aix", "openharmony"].find((o) =>
        platform.includes(o === "win32" ? "win32" : o),
      ) ?? (platform.includes("windows") || platform.includes("win") ? "win32" : undefined);
    const cpu = ["arm64", "x64", "ia32", "arm", "loong64", "mips64el", "ppc64", "riscv64", "s390x", "wasm32"].find(
      (c) => platform.includes(c),
    );
    const record = { version: spec.replace(/^[\^~=]/, ""), dev: entry.dev, optional: true };
    if (os) record.os = [os];
    if (cpu) record.cpu = [cpu];
    if (platform.includes("musl")) record.libc = ["musl"];
    else if (os === "linux") record.libc = ["glibc"];
    packages[`node_modules/${name}`] = record;
    added++;
  }
}
writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} optional platform entries`);
