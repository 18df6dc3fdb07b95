/**
 * The REST side of banter, same origin (nginx sends /api/ to the cluster). The session is the
 * httpOnly `token` cookie: every call sends credentials and never sees the token.
 */
import type { ClusterView } from "./generated/ClusterView";
import type { DrainAnswer } from "./generated/DrainAnswer";
import type { ApiErrorBody, Channel, DirectMessage, Message, OnlineUser, User, UserInfo } from "./types";

/** A refused or failed request, with the server's code, words and field errors. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fieldErrors: Record<string, string>;
  readonly retryAfterMs?: number;

  constructor(status: number, body: Partial<ApiErrorBody>) {
    super(body.message || "Something went wrong. Please try again.");
    this.status = status;
    this.code = body.code || "internal";
    this.fieldErrors = {};
    for (const e of body.errors ?? []) {
      if (!(e.field in this.fieldErrors)) this.fieldErrors[e.field] = e.message;
    }
    this.retryAfterMs = body.retry_after_ms;
  }
}

/**
 * A field error in a sentence: the server's `must be 3 to 32 characters` for `Username`
 * reads "Username must be 3 to 32 characters."
 */
export function fieldSentence(label: string, message: string): string {
  const text = message.trim();
  if (!text) return `${label} is not valid.`;
  const sentence = /^[a-z]/.test(text) ? `${label} ${text}` : text;
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

/**
 * The error a refused request answered, as an ApiError: the body is `{code, message, ...}`,
 * or the same wrapped as `{error: {...}}`; a body that is neither still gives a sentence.
 */
export function errorFrom(status: number, data: unknown): ApiError {
  const body = errorBody(data);
  if (!body.message && status >= 500) body.message = "The server is unavailable. Please try again.";
  return new ApiError(status, body);
}

/** The fields of an error answer, flat or wrapped in `error` (a copy; empty when neither). */
export function errorBody(data: unknown): Partial<ApiErrorBody> & Record<string, unknown> {
  if (!data || typeof data !== "object") return {};
  const inner = (data as { error?: unknown }).error;
  return { ...(inner && typeof inner === "object" ? inner : data) };
}

/** A response body as JSON, or undefined when it is empty or not JSON. */
export function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

type Method = "GET" | "POST" | "PATCH" | "DELETE";

async function send(method: Method, path: string, body?: unknown): Promise<{ data: unknown; headers: Headers }> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: "include",
      headers: body === undefined ? undefined : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { code: "network", message: "Cannot reach the server. Check your connection." });
  }
  const data = parseJson(await res.text());
  if (!res.ok) throw errorFrom(res.status, data);
  return { data, headers: res.headers };
}

async function request<T>(method: Method, path: string, body?: unknown): Promise<T> {
  return (await send(method, path, body)).data as T;
}

/** A positive whole number from a header, or null. */
function seqHeader(value: string | null): number | null {
  const n = Number(value);
  return value && Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** The largest page of `GET /api/channels`. */
const CHANNEL_PAGE = 200;

export interface HistoryPage {
  messages: Message[];
  firstSeq: number | null;
  /** The channel's change cursor as of before the page was read (`X-Last-Change`), or null. */
  lastChange: number | null;
}

/** A whole number (0 included) from a header, or null. */
function countHeader(value: string | null): number | null {
  const n = Number(value);
  return value !== null && value !== "" && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

const segment = encodeURIComponent;

interface AuthAnswer {
  message: string;
  user: User;
}

export const api = {
  me: () => request<User>("GET", "/api/auth/me"),
  register: (username: string, email: string, password: string) =>
    request<AuthAnswer>("POST", "/api/auth/register", { username, email, password }).then((a) => a.user),
  /** `login` is an email when it has an `@`, else a username. */
  login: (login: string, password: string) =>
    request<AuthAnswer>(
      "POST",
      "/api/auth/login",
      login.includes("@") ? { email: login.trim(), password } : { username: login.trim(), password },
    ).then((a) => a.user),
  guest: (username?: string) =>
    request<AuthAnswer>("POST", "/api/auth/guest", username ? { username } : {}).then((a) => a.user),
  logout: () => request<{ message: string }>("POST", "/api/auth/logout"),
  /** Every channel: the list comes a page at a time, by name (at most 50 pages are read). */
  channels: async () => {
    const all: Channel[] = [];
    let after: string | undefined;
    for (let page = 0; page < 50; page++) {
      const q = new URLSearchParams({ limit: String(CHANNEL_PAGE) });
      if (after !== undefined) q.set("after", after);
      const batch = await request<Channel[]>("GET", `/api/channels?${q}`);
      all.push(...batch);
      if (batch.length < CHANNEL_PAGE) break;
      after = batch[batch.length - 1]?.name;
    }
    return all;
  },
  createChannel: (name: string, description: string, password: string) =>
    request<Channel>("POST", "/api/channels", {
      name,
      ...(description.trim() ? { description: description.trim() } : {}),
      ...(password ? { password } : {}),
    }),
  /**
   * A page of history, oldest first, and the oldest seq the channel still keeps
   * (`X-First-Seq`; null when the server does not say).
   */
  history: async (channel: string, opts: { before?: number; limit: number }): Promise<HistoryPage> => {
    const q = new URLSearchParams({ limit: String(opts.limit) });
    if (opts.before !== undefined) q.set("before", String(opts.before));
    const { data, headers } = await send("GET", `/api/channels/${encodeURIComponent(channel)}/messages?${q}`);
    return {
      messages: data as Message[],
      firstSeq: seqHeader(headers.get("X-First-Seq")),
      lastChange: countHeader(headers.get("X-Last-Change")),
    };
  },
  online: (channel: string) =>
    request<OnlineUser[]>("GET", `/api/presence/online?channel=${encodeURIComponent(channel)}`),
  /** The user's direct-message channels, the most recently active first. */
  dms: () => request<DirectMessage[]>("GET", "/api/dms"),
  /** Opens (or finds) the direct-message channel with a user. */
  openDm: (username: string) => request<DirectMessage>("POST", "/api/dms", { username: username.trim() }),
  user: (username: string) => request<UserInfo>("GET", `/api/users/${segment(username)}`),
  /** Whether this user is an administrator (`GET /api/auth/me` says so). */
  isAdmin: async () => (await request<User>("GET", "/api/auth/me")).admin === true,
  removeMember: (channel: string, username: string) =>
    request<{ removed: boolean }>("DELETE", `/api/channels/${segment(channel)}/members/${segment(username)}`),
  ban: (username: string) => request<{ banned: boolean }>("POST", `/api/admin/users/${segment(username)}/ban`),
  /** Every instance's last report, summed, with the busiest channels and dependencies (administrators only). */
  cluster: () => request<ClusterView>("GET", "/api/admin/cluster"),
  /** Asks an instance to stop taking sessions and move its sockets to the others (202). */
  drain: (instance: string) => request<DrainAnswer>("POST", `/api/admin/instances/${segment(instance)}/drain`),
  /** Calls an instance's drain off: it takes sessions again (202). */
  undrain: (instance: string) => request<DrainAnswer>("DELETE", `/api/admin/instances/${segment(instance)}/drain`),
};
