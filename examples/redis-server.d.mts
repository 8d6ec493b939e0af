/**
 * The Redis for the examples (and benchmarks): REDIS_URL unless `isolated`, or a private redis-server
 * from PATH on a free loopback port, stopped by `stop()`. Rejects if redis-server is missing or exits.
 */
export function localRedis(options?: { isolated?: boolean }): Promise<{ url: string; port: number; stop(): void }>;
