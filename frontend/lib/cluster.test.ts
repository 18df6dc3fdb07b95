import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "./api";
import {
  ClusterPoller,
  asSentence,
  clusterTotals,
  dependencyName,
  drainError,
  drainQuestion,
  formatAge,
  formatCount,
  formatCpu,
  formatLatency,
  formatLoad,
  formatMiB,
  formatRate,
  isLate,
  moderationAction,
  moderationTarget,
  plural,
  pollDelay,
  type ClusterPollState,
  type ClusterView,
  type InstanceView,
} from "./cluster";

function instance(id: string, patch: Partial<InstanceView> = {}): InstanceView {
  return {
    id,
    version: "0.1.0",
    started_at: "2025-01-01T12:00:00Z",
    reported_at: "2025-01-01T12:10:00Z",
    sockets: 4,
    users: 3,
    capacity: 10_000,
    cpu: 0.25,
    cores: 2,
    rss_bytes: 48 * 1024 * 1024,
    deliveries_per_sec: 12.5,
    drops_per_sec: 0,
    drops: 0,
    moved: 0,
    draining: false,
    weight: 100,
    channels: [],
    ...patch,
  };
}

function view(instances: InstanceView[], patch: Partial<ClusterView> = {}): ClusterView {
  return {
    at: "2025-01-01T12:10:01Z",
    answered_by: instances[0]?.id ?? "a",
    instances,
    silent: [],
    sockets: instances.reduce((s, i) => s + i.sockets, 0),
    online: 5,
    deliveries_per_sec: instances.reduce((s, i) => s + i.deliveries_per_sec, 0),
    drops_per_sec: 0,
    channels: [],
    dependencies: [],
    moderation: [],
    ...patch,
  };
}

describe("cluster figures in words", () => {
  it("groups counts and shows sockets against capacity", () => {
    expect(formatCount(0)).toBe("0");
    expect(formatCount(12345)).toBe("12,345");
    expect(formatCount(-3)).toBe("0");
    expect(formatCount(Number.NaN)).toBe("0");
    expect(formatLoad(4, 10_000)).toBe("4 / 10,000");
  });

  it("shows rates whole above ten, with a decimal below, and a trickle as <0.1", () => {
    expect(formatRate(0)).toBe("0");
    expect(formatRate(0.04)).toBe("<0.1");
    expect(formatRate(0.5)).toBe("0.5");
    expect(formatRate(2)).toBe("2");
    expect(formatRate(9.96)).toBe("10");
    expect(formatRate(1234.4)).toBe("1,234");
    expect(formatRate(Number.POSITIVE_INFINITY)).toBe("0");
  });

  it("shows CPU as a share of the instance's cores", () => {
    expect(formatCpu(0, 2)).toBe("0%");
    expect(formatCpu(0.5, 2)).toBe("25%");
    expect(formatCpu(1.5, 1)).toBe("150%");
    expect(formatCpu(0.01, 4)).toBe("<1%");
    expect(formatCpu(0.3, 0)).toBe("30%");
  });

  it("shows memory in MiB and latency in ms", () => {
    expect(formatMiB(48 * 1024 * 1024)).toBe("48 MiB");
    expect(formatMiB(45.34 * 1024 * 1024)).toBe("45.3 MiB");
    expect(formatMiB(1024 * 1024 * 1024)).toBe("1,024 MiB");
    expect(formatLatency(null)).toBe("—");
    expect(formatLatency(0.05)).toBe("<0.1 ms");
    expect(formatLatency(0.42)).toBe("0.4 ms");
    expect(formatLatency(12.6)).toBe("13 ms");
  });

  it("says how old a report is, and when it is late", () => {
    const at = "2025-01-01T12:00:00Z";
    const t = Date.parse(at);
    expect(formatAge(at, t - 800)).toBe("just now");
    expect(formatAge(at, t + 999)).toBe("just now");
    expect(formatAge(at, t + 3000)).toBe("3 s ago");
    expect(formatAge(at, t + 125_000)).toBe("2 min ago");
    expect(formatAge(at, t + 2 * 3600_000)).toBe("2 h ago");
    expect(formatAge("not a date", t)).toBe("—");
    expect(isLate(at, t + 6000)).toBe(false);
    expect(isLate(at, t + 6001)).toBe(true);
  });

  it("names dependencies and moderation actions", () => {
    expect(dependencyName("postgres")).toBe("PostgreSQL");
    expect(dependencyName("postgres_replica")).toBe("PostgreSQL replica");
    expect(dependencyName("redis")).toBe("Redis");
    expect(dependencyName("s3")).toBe("s3");
    expect(moderationAction("user.ban")).toBe("Banned");
    expect(moderationAction("message.delete")).toBe("Deleted a message");
    expect(moderationAction("something.new")).toBe("something.new");
    expect(moderationTarget({ target: "bob", message_seq: 12 })).toBe("bob");
    expect(moderationTarget({ target: null, message_seq: 1200 })).toBe("message 1,200");
    expect(moderationTarget({ target: null, message_seq: null })).toBe("—");
    expect(asSentence("only administrators may do this")).toBe("Only administrators may do this.");
    expect(asSentence("Cannot reach the server. Check your connection.")).toBe("Cannot reach the server. Check your connection.");
    expect(asSentence("  ")).toBe("");
    expect(plural(1, "socket")).toBe("1 socket");
    expect(plural(2000, "socket")).toBe("2,000 sockets");
  });

  it("sums up the cluster", () => {
    const v = view([instance("a", { sockets: 4 }), instance("b", { sockets: 3, draining: true })], { online: 6 });
    expect(clusterTotals(v)).toEqual({
      instances: 2,
      draining: 1,
      sockets: 7,
      capacity: 20_000,
      online: 6,
      deliveriesPerSec: 25,
      dropsPerSec: 0,
    });
  });

  it("asks before a drain, and warns when no other instance takes sessions", () => {
    const a = instance("a", { sockets: 1 });
    const b = instance("b");
    expect(drainQuestion(view([a, b]), a, true)).toEqual({
      title: "Drain a?",
      description:
        "It stops taking new sessions and moves its 1 socket to the other instances; each client reconnects by itself and keeps its session.",
    });
    const alone = drainQuestion(view([a, { ...b, draining: true }]), a, true);
    expect(alone.description).toMatch(/No other instance is taking sessions/);
    expect(drainQuestion(view([a, b]), b, false).title).toBe("Undrain b?");
  });

  it("says why a drain was refused", () => {
    expect(drainError(new ApiError(404, { code: "not_found", message: "instance not found" }), "x", true)).toBe(
      "Could not drain x: that instance is no longer registered.",
    );
    expect(drainError(new ApiError(403, { code: "forbidden" }), "x", false)).toBe("You may not undrain x: only administrators may.");
    expect(drainError(new ApiError(0, { code: "network", message: "Cannot reach the server." }), "x", true)).toBe(
      "Could not drain x: Cannot reach the server.",
    );
    expect(drainError(new Error("boom"), "x", true)).toBe("Could not drain x.");
  });
});

describe("polling the cluster", () => {
  let answers: (() => Promise<ClusterView>)[];
  let calls: number;
  let states: ClusterPollState[];
  let poller: ClusterPoller;
  const last = () => states[states.length - 1]!;

  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.parse("2025-01-01T12:10:00Z"));
    answers = [];
    calls = 0;
    states = [];
    poller = new ClusterPoller(
      () => {
        calls++;
        const next = answers.shift();
        return next ? next() : Promise.resolve(view([instance("a")]));
      },
      (s) => states.push(s),
    );
  });

  afterEach(() => {
    poller.stop();
    vi.useRealTimers();
  });

  it("asks at once, then every 2 s while started, and not after it is stopped", async () => {
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    expect(last().view?.instances[0]?.id).toBe("a");
    expect(last().updatedAt).toBe(Date.parse("2025-01-01T12:10:00Z"));
    expect(last().nextAt).toBe(Date.parse("2025-01-01T12:10:02Z"));
    await vi.advanceTimersByTimeAsync(1999);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(4000);
    expect(calls).toBe(4);
    poller.stop();
    expect(last().nextAt).toBeNull();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls).toBe(4);
    // Shown again: at once.
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(5);
  });

  it("backs off while requests fail, keeps the last view and shows the error, then recovers", async () => {
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    const network = () => Promise.reject(new ApiError(0, { code: "network", message: "Cannot reach the server." }));
    answers.push(network, network, network);
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toBe(2);
    expect(last()).toMatchObject({ error: "Cannot reach the server.", failures: 1 });
    expect(last().view?.instances[0]?.id).toBe("a");
    await vi.advanceTimersByTimeAsync(3999);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(3);
    expect(last().failures).toBe(2);
    await vi.advanceTimersByTimeAsync(8000);
    expect(calls).toBe(4);
    expect(last().failures).toBe(3);
    // The next answer comes: the error goes, and the pace is back to 2 s.
    await vi.advanceTimersByTimeAsync(16_000);
    expect(calls).toBe(5);
    expect(last()).toMatchObject({ error: null, failures: 0 });
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toBe(6);
  });

  it("waits as long as a rate limit says", async () => {
    answers.push(() => Promise.reject(new ApiError(429, { code: "rate_limited", message: "Slow down.", retry_after_ms: 9000 })));
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(last().error).toBe("Slow down.");
    await vi.advanceTimersByTimeAsync(8999);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toBe(2);
  });

  it("stops for good when the session is over or the user is no administrator", async () => {
    answers.push(() => Promise.reject(new ApiError(403, { code: "forbidden", message: "only administrators may do this" })));
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(last()).toMatchObject({ ended: "forbidden", error: "only administrators may do this" });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toBe(1);
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
  });

  it("drops an answer that arrives after it was stopped", async () => {
    let resolve!: (v: ClusterView) => void;
    answers.push(() => new Promise((r) => (resolve = r)));
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    poller.stop();
    resolve(view([instance("late")]));
    await vi.advanceTimersByTimeAsync(0);
    expect(last().view).toBeNull();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls).toBe(1);
  });

  it("asks again at once on refresh, once more after a request under way", async () => {
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    poller.refresh();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(2);
    let resolve!: (v: ClusterView) => void;
    answers.push(() => new Promise((r) => (resolve = r)));
    poller.refresh();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(3);
    poller.refresh(); // while the third is under way
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(3);
    resolve(view([instance("b")]));
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toBe(4);
  });

  it("waits 2 s, then doubles up to 30 s", () => {
    expect([0, 1, 2, 3, 4, 10].map((f) => pollDelay(f))).toEqual([2000, 4000, 8000, 16_000, 30_000, 30_000]);
    expect(pollDelay(0, 5000)).toBe(5000);
    expect(pollDelay(1, 120_000)).toBe(30_000);
  });
});
