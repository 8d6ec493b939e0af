/**
 * A seeded pseudo-random source (Park-Miller), for tests whose random schedule must be the same in
 * every run: a failure then replays.
 */
export function seededRandom(seed: number): () => number {
  let state = seed % 2147483647 || 1;
  return () => {
    state = (state * 16807) % 2147483647;
    return state / 2147483647;
  };
}
