/**
 * The cluster page of administrators: the figures of `GET /api/admin/cluster` in words, and the
 * poller that keeps them fresh (every 2 s while the page is shown, backing off while requests
 * fail). It knows nothing of React: the page starts and stops it.
 */
import { ApiError } from "./api";
import type { ClusterView } from "./generated/ClusterView";
import type { InstanceView } from "./generated/InstanceView";
import type { ModerationEntry } from "./generated/ModerationEntry";

export type { ClusterView, InstanceView, ModerationEntry };
export type { ChannelActivity } from "./generated/ChannelActivity";
export type { DependencyHealth } from "./generated/DependencyHealth";

/** How often the page asks for the cluster's figures (the instances report every 2 s). */
export const POLL_MS = 2000;
/** The longest wait between attempts while they fail. */
export const MAX_BACKOFF_MS = 30_000;
/** A report older than this (three missed reports) is shown as late. */
export const LATE_AFTER_MS = 6000;

const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

/** A count, grouped: 12,345. */
export function formatCount(n: number): string {
  return whole.format(Number.isFinite(n) ? Math.max(0, n) : 0);
}

/** Sockets against capacity: "4 / 10,000". */
export function formatLoad(sockets: number, capacity: number): string {
  return `${formatCount(sockets)} / ${formatCount(capacity)}`;
}

/** A rate a second: whole above 10, one decimal below ("2.5"), "<0.1" for a trickle. */
export function formatRate(perSec: number): string {
  if (!Number.isFinite(perSec) || perSec <= 0) return "0";
  if (perSec < 0.1) return "<0.1";
  return perSec < 10 ? oneDecimal.format(perSec) : whole.format(perSec);
}

/** CPU in cores as a share of the instance's cores: 0.5 of 2 cores is "25%". */
export function formatCpu(cpu: number, cores: number): string {
  if (!Number.isFinite(cpu) || cpu <= 0) return "0%";
  const percent = (cpu / Math.max(1, cores)) * 100;
  return percent < 1 ? "<1%" : `${whole.format(percent)}%`;
}

/** Resident memory in MiB: one decimal below 100 ("45.3 MiB"), whole above ("1,024 MiB"). */
export function formatMiB(bytes: number): string {
  const mib = Math.max(0, bytes) / (1024 * 1024);
  return `${mib < 100 ? oneDecimal.format(mib) : whole.format(mib)} MiB`;
}

/** A dependency's answer time: "0.4 ms", "12 ms"; "—" when it did not answer. */
export function formatLatency(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "—";
  if (ms < 0.1) return "<0.1 ms";
  return `${ms < 10 ? oneDecimal.format(ms) : whole.format(ms)} ms`;
}

/** How long ago a report was made: "just now", "3 s ago", "2 min ago", "1 h ago". */
export function formatAge(iso: string, now: number): string {
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "—";
  const seconds = Math.floor((now - at) / 1000);
  // Clocks of the instances and of this browser differ a little: "just now" either way.
  if (seconds < 1) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

/** Whether a report is older than three reporting periods. */
export function isLate(iso: string, now: number): boolean {
  const at = Date.parse(iso);
  return !Number.isNaN(at) && now - at > LATE_AFTER_MS;
}

/** A server's words as a sentence: "only administrators may do this" → "Only administrators may do this." */
export function asSentence(text: string): string {
  const t = text.trim();
  if (!t) return "";
  const capital = t[0]!.toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

/** "1 socket", "4 sockets". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

const DEPENDENCIES: Record<string, string> = {
  postgres: "PostgreSQL",
  postgres_replica: "PostgreSQL replica",
  redis: "Redis",
};

/** A dependency's name as people know it. */
export function dependencyName(name: string): string {
  return DEPENDENCIES[name] ?? name;
}

const ACTIONS: Record<string, string> = {
  "message.delete": "Deleted a message",
  "channel.remove_member": "Removed a member",
  "user.ban": "Banned",
  "user.unban": "Unbanned",
};

/** A moderation log entry's action in words. */
export function moderationAction(action: string): string {
  return ACTIONS[action] ?? action;
}

/** Whom or what a moderation entry acted on: the person, else the message by its number. */
export function moderationTarget(entry: Pick<ModerationEntry, "target" | "message_seq">): string {
  if (entry.target) return entry.target;
  if (entry.message_seq !== null) return `message ${formatCount(entry.message_seq)}`;
  return "—";
}

/** The cluster's figures the page sums up at the top. */
export function clusterTotals(view: ClusterView) {
  return {
    instances: view.instances.length,
    draining: view.instances.filter((i) => i.draining).length,
    sockets: view.sockets,
    capacity: view.instances.reduce((sum, i) => sum + i.capacity, 0),
    online: view.online,
    deliveriesPerSec: view.deliveries_per_sec,
    dropsPerSec: view.drops_per_sec,
  };
}

/** What the confirmation of a drain (or of calling one off) says. */
export function drainQuestion(view: ClusterView, instance: InstanceView, drain: boolean): { title: string; description: string } {
  if (!drain) {
    return {
      title: `Undrain ${instance.id}?`,
      description: "It takes new sessions again. Sockets already moved stay where they are.",
    };
  }
  const others = view.instances.filter((i) => i.id !== instance.id && !i.draining).length;
  const moves = `It stops taking new sessions and moves its ${plural(instance.sockets, "socket")} to the other instances; each client reconnects by itself and keeps its session.`;
  return {
    title: `Drain ${instance.id}?`,
    description:
      others === 0
        ? `${moves} No other instance is taking sessions: its clients cannot reconnect until a drain is called off.`
        : moves,
  };
}

/** A refused drain request in words. */
export function drainError(e: unknown, instance: string, drain: boolean): string {
  const what = drain ? `drain ${instance}` : `undrain ${instance}`;
  if (e instanceof ApiError) {
    if (e.status === 404) return `Could not ${what}: that instance is no longer registered.`;
    if (e.status === 403) return `You may not ${what}: only administrators may.`;
    return `Could not ${what}: ${e.message}`;
  }
  return `Could not ${what}.`;
}

/** The wait before the next attempt: every 2 s, doubling after each failure up to 30 s. */
export function pollDelay(failures: number, retryAfterMs = 0): number {
  const backoff = failures <= 0 ? POLL_MS : Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** failures);
  return Math.max(backoff, Math.min(MAX_BACKOFF_MS, retryAfterMs));
}

export interface ClusterPollState {
  /** The last view that arrived (kept while later requests fail). */
  view: ClusterView | null;
  /** When it arrived (local ms). */
  updatedAt: number | null;
  /** Why the last request failed, or null. */
  error: string | null;
  /** Requests failed in a row. */
  failures: number;
  /** When the next request goes (local ms), or null while one is under way or polling is off. */
  nextAt: number | null;
  /** Polling stopped for good: the session is over (401), or the user is no administrator (403). */
  ended: "signed-out" | "forbidden" | null;
  /** The refusal that ended it (for the session's own handling). */
  endedBy: unknown;
}

type Timer = ReturnType<typeof setTimeout>;

/**
 * Asks for the cluster's figures now and every 2 s between `start` and `stop`; after a failure
 * it waits longer each time (4, 8, 16, then 30 s) and keeps the last view. A 401 or 403 ends
 * polling. `refresh` asks at once (after a drain was requested).
 */
export class ClusterPoller {
  private current: ClusterPollState = {
    view: null,
    updatedAt: null,
    error: null,
    failures: 0,
    nextAt: null,
    ended: null,
    endedBy: null,
  };
  private running = false;
  private timer: Timer | null = null;
  /** Bumped by `stop`: answers to requests made before are dropped. */
  private generation = 0;
  /** The generation of the request under way, or null. */
  private inflight: number | null = null;
  /** Another request was asked for while one was under way. */
  private again = false;
  private retryAfterMs = 0;

  constructor(
    private readonly load: () => Promise<ClusterView>,
    private readonly onChange: (state: ClusterPollState) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): ClusterPollState {
    return this.current;
  }

  get active(): boolean {
    return this.running;
  }

  /** Polls now, then every 2 s (the page is shown). */
  start(): void {
    if (this.running || this.current.ended) return;
    this.running = true;
    void this.poll();
  }

  /** Stops polling (the page is hidden or gone); a request under way is ignored. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    this.inflight = null;
    this.again = false;
    this.cancelTimer();
    this.set({ nextAt: null });
  }

  /** Asks at once instead of at the next tick. */
  refresh(): void {
    if (!this.running || this.current.ended) return;
    void this.poll();
  }

  private set(patch: Partial<ClusterPollState>): void {
    this.current = { ...this.current, ...patch };
    this.onChange(this.current);
  }

  private cancelTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private async poll(): Promise<void> {
    this.cancelTimer();
    if (this.inflight !== null) {
      this.again = true;
      return;
    }
    const generation = this.generation;
    this.inflight = generation;
    if (this.current.nextAt !== null) this.set({ nextAt: null });
    try {
      const view = await this.load();
      if (generation !== this.generation) return;
      this.retryAfterMs = 0;
      this.set({ view, updatedAt: this.now(), error: null, failures: 0 });
    } catch (e) {
      if (generation !== this.generation) return;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
        this.running = false;
        this.set({ ended: e.status === 401 ? "signed-out" : "forbidden", endedBy: e, error: e.message, nextAt: null });
        return;
      }
      this.retryAfterMs = e instanceof ApiError ? (e.retryAfterMs ?? 0) : 0;
      this.set({ error: e instanceof Error ? e.message : "The request failed.", failures: this.current.failures + 1 });
    } finally {
      if (this.inflight === generation) this.inflight = null;
    }
    this.schedule();
  }

  private schedule(): void {
    if (!this.running || this.current.ended) return;
    const delay = this.again ? 0 : pollDelay(this.current.failures, this.retryAfterMs);
    this.again = false;
    this.set({ nextAt: this.now() + delay });
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll();
    }, delay);
  }
}
