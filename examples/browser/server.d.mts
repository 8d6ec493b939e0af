/** What the example's API saw: requests, the most answered at once, the 429s it sent. */
export interface ExampleServerStatistics {
  requests: number;
  inFlight: number;
  mostInFlight: number;
  rateLimited: number;
}

export declare function startExampleServer(): Promise<{
  /** The page. */
  url: string;
  /** Where everything the page loads must come from. */
  origin: string;
  stats: ExampleServerStatistics;
  close(): Promise<void>;
}>;
