/**
 * LLM-as-a-judge in bulk, within the provider's limits: requests per minute AND tokens per minute AND a
 * cap on concurrent requests. Each call's token cost is estimated from the prompt before it starts and
 * settled from the response's usage afterwards; rate-limit headers and a 429 feed back into the limiter.
 *
 * The "API" is simulated in-process, and time is scaled (one "minute" lasts one second) so the whole run
 * takes about two seconds.
 *
 * Run: npm run build && npx tsx examples/llm-judge-rate-limits.ts
 */
// An ES module (top-level await): copied into a project without "type": "module", save it as .mts.
import { RateLimiter } from "sluice";

const MINUTE = 1_000; // scaled: one "minute" of the provider's limits lasts one second here
const MAX_TOKENS = 200; // the judge's max_tokens

const limiter = new RateLimiter({
  limits: [
    { limit: 60, interval: MINUTE }, // 60 requests per minute
    { limit: 8_000, interval: MINUTE, unit: "tokens" }, // 8,000 tokens per minute
  ],
  concurrency: 8, // at most 8 requests in flight
});

/** A rough token estimate: ~4 characters per token for the prompt, plus the most the reply may use. */
function estimateTokens(prompt: string): number {
  return Math.ceil(prompt.length / 4) + MAX_TOKENS;
}

async function judge(question: string, answer: string): Promise<number> {
  const prompt = `Rate from 1 to 10 how well the answer fits the question.\nQuestion: ${question}\nAnswer: ${answer}`;
  for (;;) {
    const outcome = await limiter.run(
      async (signal, permit) => {
        const response = await chatCompletion(prompt, signal);
        // Correct the estimate with what the call really used; the unused part goes back to the budget.
        if (response.usage) permit.settle({ tokens: response.usage.total_tokens });
        // Let the server's view tighten ours, and pause everyone on a 429's Retry-After.
        limiter.observe(response.headers);
        return response;
      },
      { cost: { tokens: estimateTokens(prompt) } },
    );
    if (outcome.status === 429) continue; // the limiter is paused now; waiting in line again is the backoff
    return outcome.score;
  }
}

// --- the simulated provider ---------------------------------------------------------------------------
interface ChatResponse {
  status: number;
  headers: Record<string, string>;
  score: number;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

const began = performance.now();
const tokenLog: { at: number; tokens: number }[] = [];
let calls = 0;

async function chatCompletion(prompt: string, signal: AbortSignal): Promise<ChatResponse> {
  signal.throwIfAborted();
  const number = ++calls;
  await new Promise((resolve) => setTimeout(resolve, 80 + Math.random() * 120));
  if (number === 12) {
    // One 429, as providers send when another client shares the same key.
    return { status: 429, headers: { "retry-after-ms": "300", "x-ratelimit-remaining-requests": "0" }, score: 0 };
  }
  const promptTokens = Math.ceil(prompt.length / 4);
  const completionTokens = 20 + Math.floor(Math.random() * 60); // well under max_tokens
  tokenLog.push({ at: performance.now() - began, tokens: promptTokens + completionTokens });
  return {
    status: 200,
    headers: { "x-ratelimit-limit-tokens": "8000", "x-ratelimit-reset-tokens": "1s" },
    score: 1 + Math.floor(Math.random() * 10),
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  };
}

// --- the evaluation --------------------------------------------------------------------------------------
limiter.on("pause", ({ until, reason }) =>
  console.log(`paused for ${(until - performance.now()).toFixed(0)} ms (${String(reason)})`),
);

const pairs = Array.from({ length: 60 }, (_, index) => ({
  question: `Question ${index + 1}: ${"why is the sky blue? ".repeat(1 + (index % 5) * 8)}`,
  answer: `Answer ${index + 1}: ${"because of Rayleigh scattering. ".repeat(1 + (index % 3) * 6)}`,
}));
const scores = await Promise.all(pairs.map(({ question, answer }) => judge(question, answer)));

const stats = limiter.statistics();
console.log(`judged ${scores.length} answers in ${(performance.now() - began).toFixed(0)} ms, ${calls} calls`);
console.log(`mean score ${(scores.reduce((sum, score) => sum + score, 0) / scores.length).toFixed(2)}`);
console.log(`tokens estimated ${stats.settled.estimated.tokens}, actually used ${stats.settled.actual.tokens}`);
let busiest = 0;
for (const { at } of tokenLog) {
  const inWindow = tokenLog.filter((entry) => entry.at >= at && entry.at < at + MINUTE);
  busiest = Math.max(
    busiest,
    inWindow.reduce((sum, entry) => sum + entry.tokens, 0),
  );
}
// A token bucket that starts full promises at most burst + rate × span: 16,000 over one "minute".
console.log(`most tokens used in any "minute": ${busiest} (a full bucket plus one minute's refill: 16,000)`);
