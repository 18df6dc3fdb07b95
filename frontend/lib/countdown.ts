/** The rate-limit block: when it ends and how the remaining time reads. */

/**
 * When a block ends, in local milliseconds. `retry_after_ms` is relative to the moment the
 * notice arrived, so it does not depend on the client's clock agreeing with the server's;
 * `until` (absolute) is used only when no duration came with the notice.
 */
export function blockEnd(
  notice: { retry_after_ms?: number; until?: string },
  receivedAt: number,
): number {
  if (typeof notice.retry_after_ms === "number" && Number.isFinite(notice.retry_after_ms)) {
    return receivedAt + Math.max(0, notice.retry_after_ms);
  }
  const until = notice.until ? Date.parse(notice.until) : NaN;
  return Number.isFinite(until) ? until : receivedAt;
}

/** Whole seconds left, rounded up so the countdown never shows 0 while still blocked. */
export function secondsLeft(endsAt: number, now: number): number {
  return Math.max(0, Math.ceil((endsAt - now) / 1000));
}

/** "27s", or "1:05" from a minute on. */
export function formatCountdown(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
