import { RateLimiter } from "sluice";
import { describeLimiterConformance } from "../conformance/limiter.js";

// As a concurrency cap, a RateLimiter is a Limiter like any other.
describeLimiterConformance("RateLimiter (concurrency)", (capacity) => ({
  limiter: new RateLimiter({ concurrency: capacity }),
}));

// Generous rate limits alongside must not change any of those semantics.
describeLimiterConformance("RateLimiter (concurrency + limits)", (capacity) => ({
  limiter: new RateLimiter({
    concurrency: capacity,
    limits: [
      { limit: 10_000, interval: "1s" },
      { limit: 10_000, interval: "1s", unit: "tokens", algorithm: "sliding-window" },
    ],
  }),
}));
