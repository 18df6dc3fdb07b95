/**
 * Reconnection delays for the cases socket.io-client does not retry by itself (the server
 * closed the connection, or refused it as unavailable): the same exponential backoff with
 * ±50% jitter as the client's own (500 ms doubling up to 5 s), so many tabs do not come back
 * in step.
 */
export function reconnectDelay(attempt: number, random: number = Math.random()): number {
  const base = Math.min(5000, 500 * 2 ** Math.max(0, attempt));
  const jitter = (random * 2 - 1) * 0.5 * base;
  return Math.round(Math.min(5000, Math.max(250, base + jitter)));
}
