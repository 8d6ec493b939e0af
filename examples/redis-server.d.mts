/** The Redis for the examples: REDIS_URL, or a private redis-server from PATH stopped by `stop()`. */
export function localRedis(): Promise<{ url: string; stop(): void }>;
