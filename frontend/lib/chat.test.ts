/**
 * The chat session against a small in-memory stand-in for banter that follows the contract's
 * shapes (acks, `message.new`, `messages.sync`, history pages): reconnects, gaps, lost acks
 * and rate limits, as a person using the app would live through them.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ChatClient, type Api, type SocketLike } from "./chat";
import type { FileRef, Message } from "./types";

const ME = { id: "u-me", username: "me", email: null };
const OTHER = { id: "u-other", username: "other" };

type Handler = (...args: never[]) => void;
type Answer = Record<string, unknown> | "no-answer";

/** The server side: stored messages per channel, and a log of what the client sent. */
class FakeBanter {
  messages = new Map<string, Message[]>();
  /** Per channel, the oldest seq still kept (retention removed the ones below). */
  firstSeq = new Map<string, number>();
  sent: { event: string; payload: Record<string, unknown> }[] = [];
  /** Per channel, the change number of the last change. */
  lastChange = new Map<string, number>();
  /** Overrides for the next `message.send` answers (first in, first used). */
  sendAnswers: ((payload: Record<string, unknown>) => Answer)[] = [];
  socket = new FakeSocket(this);

  store(channel: string, text: string, sender = OTHER, cid = `cid-${Math.random()}`): Message {
    const list = this.messages.get(channel) ?? [];
    const seq = (list[list.length - 1]?.seq ?? (this.firstSeq.get(channel) ?? 1) - 1) + 1;
    const m: Message = {
      id: `id-${channel}-${seq}`,
      channel,
      seq,
      text,
      sender: sender.username,
      sender_id: sender.id,
      client_message_id: cid,
      createdAt: new Date(Date.UTC(2025, 0, 1, 12, seq)).toISOString(),
    };
    list.push(m);
    this.messages.set(channel, list);
    return m;
  }

  /** Edits a stored message: the channel's next change number; returns the broadcast. */
  edit(channel: string, seq: number, text: string) {
    const change = (this.lastChange.get(channel) ?? 0) + 1;
    this.lastChange.set(channel, change);
    const m = this.messages.get(channel)!.find((x) => x.seq === seq)!;
    Object.assign(m, { text, change, edited_at: "2025-01-01T13:00:00Z" });
    return { channel, id: m.id, seq, change, text, edited_at: m.edited_at };
  }

  /** Retention: the messages below `seq` are removed. */
  expire(channel: string, seq: number) {
    this.messages.set(channel, (this.messages.get(channel) ?? []).filter((m) => m.seq >= seq));
    this.firstSeq.set(channel, seq);
  }

  answer(event: string, payload: Record<string, unknown>): Answer {
    this.sent.push({ event, payload });
    const channel = String(payload.channel);
    const list = this.messages.get(channel) ?? [];
    switch (event) {
      case "channel.join":
        return {
          ok: true,
          channel: { name: channel, description: null, private: false, createdAt: "", first_seq: this.firstSeq.get(channel) ?? 1 },
          online: 2,
        };
      case "messages.sync": {
        const after = Number(payload.after_seq);
        const limit = Number(payload.limit ?? 100);
        const page = list.filter((m) => m.seq > after);
        const since = typeof payload.after_change === "number" ? payload.after_change : null;
        const changes = since === null ? [] : list.filter((m) => m.seq <= after && (m.change ?? 0) > since).map((m) => ({ ...m }));
        return {
          ok: true,
          messages: page.slice(0, limit).map((m) => ({ ...m })),
          has_more: page.length > limit,
          first_seq: this.firstSeq.get(channel) ?? 1,
          changes,
          changes_has_more: false,
          last_change: this.lastChange.get(channel) ?? 0,
        };
      }
      case "message.send": {
        const override = this.sendAnswers.shift();
        if (override) return override(payload);
        return this.acceptSend(payload);
      }
      default:
        return { ok: true };
    }
  }

  /** Stores a send idempotently, broadcasts it, and answers as banter does. */
  acceptSend(payload: Record<string, unknown>): Record<string, unknown> {
    const channel = String(payload.channel);
    const cid = String(payload.client_message_id);
    const held = (this.messages.get(channel) ?? []).find((m) => m.sender_id === ME.id && m.client_message_id === cid);
    if (held) return { ok: true, message: held, duplicate: true };
    const m = this.store(channel, String(payload.text), ME, cid);
    if (payload.file) m.file = { ...(payload.file as FileRef), size: 2048 };
    this.socket.push("message.new", m);
    return { ok: true, message: m, duplicate: false };
  }

  api(): Api {
    return {
      me: async () => ME,
      channels: async () => [{ name: "general", description: null, private: false, createdAt: "" }],
      online: async () => [
        { userId: ME.id, username: ME.username },
        { userId: OTHER.id, username: OTHER.username },
      ],
      history: async (channel: string, opts: { before?: number; limit: number }) => {
        const list = (this.messages.get(channel) ?? []).filter((m) => opts.before === undefined || m.seq < opts.before);
        return {
          messages: list.slice(-opts.limit).map((m) => ({ ...m })),
          firstSeq: this.firstSeq.get(channel) ?? 1,
          lastChange: this.lastChange.get(channel) ?? 0,
        };
      },
    } as unknown as Api;
  }
}

class FakeSocket implements SocketLike {
  connected = false;
  active = true;
  recovered = false;
  up = true;
  private handlers = new Map<string, Handler[]>();
  private ioHandlers = new Map<string, Handler[]>();
  io = {
    on: (event: string, h: Handler) => this.ioHandlers.set(event, [...(this.ioHandlers.get(event) ?? []), h]),
    off: () => this.ioHandlers.clear(),
  };

  constructor(private server: FakeBanter) {}

  on(event: string, h: Handler) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), h]);
  }
  off() {
    this.handlers.clear();
  }
  connect() {
    if (!this.up || this.connected) return;
    this.connected = true;
    this.fire("connect");
  }
  disconnect() {
    this.connected = false;
  }
  /** The connection drops (an instance died); socket.io-client would retry by itself. */
  drop() {
    this.connected = false;
    this.fire("disconnect", "transport close");
  }
  emit(event: string, payload: unknown, ack?: (a: unknown) => void) {
    const answer = this.server.answer(event, payload as Record<string, unknown>);
    if (ack && answer !== "no-answer") queueMicrotask(() => ack(answer));
  }
  timeout() {
    return {
      emit: (event: string, payload: unknown, cb: (err: Error | null, a?: unknown) => void) => {
        if (!this.connected) return;
        const answer = this.server.answer(event, payload as Record<string, unknown>);
        if (answer !== "no-answer") queueMicrotask(() => this.connected && cb(null, answer));
      },
    };
  }
  /** A server → client event. */
  push(event: string, data: unknown) {
    if (this.connected) queueMicrotask(() => this.fire(event, data));
  }
  private fire(event: string, ...args: unknown[]) {
    for (const h of this.handlers.get(event) ?? []) (h as (...a: unknown[]) => void)(...args);
  }
}

let server: FakeBanter;
let chat: ChatClient;
let n = 0;

async function settle(ms = 0) {
  await vi.advanceTimersByTimeAsync(ms);
  for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(0);
}

const texts = () => (chat.getSnapshot().byChannel.general?.messages ?? []).map((m) => m.text);
const seqs = () => (chat.getSnapshot().byChannel.general?.messages ?? []).map((m) => m.seq);
const outgoing = () => chat.getSnapshot().byChannel.general?.outgoing ?? [];

beforeEach(async () => {
  vi.useFakeTimers();
  server = new FakeBanter();
  server.store("general", "one");
  server.store("general", "two");
  chat = new ChatClient(ME, { socket: server.socket, api: server.api(), uuid: () => `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}` });
  chat.start();
  await settle();
});

afterEach(() => {
  chat.stop();
  vi.useRealTimers();
});

describe("the chat session", () => {
  it("opens the default channel with its history and shows live messages", async () => {
    expect(chat.getSnapshot().current).toBe("general");
    expect(chat.getSnapshot().onlineCount).toBe(2);
    expect(chat.getSnapshot().online.map((u) => u.username)).toEqual(["me", "other"]);
    expect(texts()).toEqual(["one", "two"]);
    server.socket.push("message.new", server.store("general", "three"));
    await settle();
    expect(texts()).toEqual(["one", "two", "three"]);
  });

  it("after a dropped connection, re-joins the channel and shows what was missed, once", async () => {
    server.socket.drop();
    expect(chat.getSnapshot().status).toBe("reconnecting");
    server.store("general", "missed 1");
    server.store("general", "missed 2");
    server.sent = [];
    server.socket.connect();
    await settle();
    expect(chat.getSnapshot().status).toBe("connected");
    expect(server.sent.map((s) => s.event)).toEqual(["channel.join", "messages.sync"]);
    expect(server.sent[1]!.payload).toMatchObject({ channel: "general", after_seq: 2 });
    expect(texts()).toEqual(["one", "two", "missed 1", "missed 2"]);
    // The same message arriving live as well changes nothing.
    server.socket.push("message.new", server.messages.get("general")![3]);
    await settle();
    expect(seqs()).toEqual([1, 2, 3, 4]);
  });

  it("after a dropped connection the server recovered, neither joins nor syncs, and shows the replay once", async () => {
    server.socket.drop();
    server.sent = [];
    server.socket.recovered = true;
    server.socket.connect();
    // The server replays what was missed, in order, right after the CONNECT answer.
    server.socket.push("message.new", server.store("general", "missed 1"));
    server.socket.push("message.new", server.store("general", "missed 2"));
    await settle();
    expect(chat.getSnapshot().status).toBe("connected");
    expect(server.sent.map((s) => s.event)).toEqual([]);
    expect(texts()).toEqual(["one", "two", "missed 1", "missed 2"]);
    // Not recovered the next time (past the window): join and sync as before.
    server.socket.drop();
    server.store("general", "missed 3");
    server.socket.recovered = false;
    server.socket.connect();
    await settle();
    expect(server.sent.map((s) => s.event)).toEqual(["channel.join", "messages.sync"]);
    expect(texts()).toEqual(["one", "two", "missed 1", "missed 2", "missed 3"]);
  });

  it("fills a gap in the live stream with messages.sync", async () => {
    server.store("general", "dropped 3");
    server.store("general", "dropped 4");
    server.sent = [];
    server.socket.push("message.new", server.store("general", "five"));
    await settle();
    expect(server.sent).toEqual([{ event: "messages.sync", payload: { channel: "general", after_seq: 2, after_change: 0, limit: 200 } }]);
    expect(seqs()).toEqual([1, 2, 3, 4, 5]);
  });

  it("does not fetch messages that retention removed while the tab was away, nor sync for them again", async () => {
    server.socket.drop();
    for (let i = 3; i <= 100; i++) server.store("general", `later ${i}`);
    server.expire("general", 80);
    server.socket.connect();
    await settle();
    expect(seqs()).toEqual([1, 2, ...Array.from({ length: 21 }, (_, i) => 80 + i)]);
    expect(chat.getSnapshot().byChannel.general?.firstSeq).toBe(80);
    // The next message is no gap, and the next catch-up starts after the newest held.
    server.sent = [];
    server.socket.push("message.new", server.store("general", "next"));
    await settle();
    expect(server.sent).toEqual([]);
    server.socket.drop();
    server.socket.connect();
    await settle();
    expect(server.sent.filter((s) => s.event === "messages.sync").map((s) => s.payload.after_seq)).toEqual([101]);
  });

  it("loads history down to the oldest message kept, and no further", async () => {
    for (let i = 1; i <= 130; i++) server.store("archive", `old ${i}`);
    server.expire("archive", 31);
    chat.selectChannel("archive");
    await settle();
    const archive = () => chat.getSnapshot().byChannel.archive!;
    expect(archive().messages.map((m) => m.seq)[0]).toBe(81);
    expect(archive().hasOlder).toBe(true);
    await chat.loadOlder();
    await settle();
    // A full page that reaches first_seq: nothing older is asked for.
    expect(archive().messages.map((m) => m.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 31 + i));
    expect(archive().hasOlder).toBe(false);
    server.sent = [];
    server.socket.push("message.new", server.store("archive", "new"));
    await settle();
    expect(server.sent).toEqual([]);
  });

  it("shows a message at once as pending, then confirmed once", async () => {
    server.sendAnswers.push(() => "no-answer");
    chat.send("  hello  ");
    expect(outgoing()).toMatchObject([{ text: "hello", status: "sending" }]);
    await settle();
    expect(outgoing()).toHaveLength(1);
  });

  it("sends an uploaded file with its link, name and type; with nothing written, its name is the text", async () => {
    const file = { url: "/uploads/k1", name: "report.pdf", type: "application/pdf", size: 2048 };
    chat.send("  ", file);
    expect(outgoing()).toMatchObject([{ text: "report.pdf", file }]);
    await settle();
    const sent = server.sent.find((s) => s.event === "message.send")!;
    expect(sent.payload).toMatchObject({ text: "report.pdf", file: { url: "/uploads/k1", name: "report.pdf", type: "application/pdf" } });
    expect(Object.keys(sent.payload.file as object).sort()).toEqual(["name", "type", "url"]);
    chat.send("the numbers", file);
    await settle();
    const stored = chat.getSnapshot().byChannel.general!.messages.slice(-2);
    expect(stored.map((m) => [m.text, m.file?.url])).toEqual([
      ["report.pdf", "/uploads/k1"],
      ["the numbers", "/uploads/k1"],
    ]);
    expect(outgoing()).toEqual([]);
  });

  it("a send whose answer and broadcast were lost in a disconnect is shown once after reconnecting", async () => {
    // The server stores the message, but the connection drops before the ack and the
    // broadcast reach this tab.
    server.sendAnswers.push((payload) => {
      server.store("general", String(payload.text), ME, String(payload.client_message_id));
      return "no-answer";
    });
    chat.send("hello");
    await settle();
    server.socket.drop();
    await settle();
    expect(outgoing()).toMatchObject([{ text: "hello", status: "queued" }]);
    server.socket.connect();
    await settle();
    // Any second send reuses the first one's client_message_id, so it cannot be stored twice.
    const sends = server.sent.filter((s) => s.event === "message.send");
    expect(new Set(sends.map((s) => s.payload.client_message_id)).size).toBe(1);
    expect(texts().filter((t) => t === "hello")).toHaveLength(1);
    expect(server.messages.get("general")!.filter((m) => m.text === "hello")).toHaveLength(1);
    expect(outgoing()).toEqual([]);
  });

  it("a send refused while the connection is down is resent with the same id; the server answers duplicate", async () => {
    // Stored, but neither ack nor broadcast arrived, and the catch-up failed too: the queued
    // copy goes out again and banter answers with the stored message.
    server.sendAnswers.push((payload) => {
      server.store("general", String(payload.text), ME, String(payload.client_message_id));
      return "no-answer";
    });
    chat.send("again");
    await settle();
    server.socket.drop();
    await settle();
    const realAnswer = server.answer.bind(server);
    server.answer = (event, payload) =>
      event === "messages.sync" ? { ok: false, error: { code: "unavailable", message: "down" } } : realAnswer(event, payload);
    server.socket.connect();
    await settle();
    const sends = server.sent.filter((s) => s.event === "message.send");
    expect(sends).toHaveLength(2);
    expect(sends[0]!.payload.client_message_id).toBe(sends[1]!.payload.client_message_id);
    expect(texts().filter((t) => t === "again")).toHaveLength(1);
    expect(outgoing()).toEqual([]);
  });

  it("a refused send shows the reason, and Retry uses the same client_message_id", async () => {
    server.sendAnswers.push(() => ({ ok: false, error: { code: "unavailable", message: "postgres is down" } }));
    chat.send("important");
    await settle();
    expect(outgoing()).toMatchObject([{ status: "failed", error: "The server could not store it." }]);
    chat.retry(outgoing()[0]!.client_message_id);
    await settle();
    const ids = server.sent.filter((s) => s.event === "message.send").map((s) => s.payload.client_message_id);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(ids[1]);
    expect(texts()).toEqual(["one", "two", "important"]);
    expect(outgoing()).toEqual([]);
  });

  it("when rate limited, holds messages and sends them by itself when the block ends", async () => {
    server.sendAnswers.push(() => ({ ok: false, error: { code: "rate_limited", message: "slow down", retry_after_ms: 3000 } }));
    chat.send("first");
    await settle();
    chat.send("second");
    await settle();
    expect(chat.getSnapshot().blockedUntil).not.toBeNull();
    expect(outgoing().map((o) => o.status)).toEqual(["queued", "queued"]);
    expect(server.sent.filter((s) => s.event === "message.send")).toHaveLength(1);

    await settle(3100);
    expect(chat.getSnapshot().blockedUntil).toBeNull();
    expect(texts()).toEqual(["one", "two", "first", "second"]);
    expect(outgoing()).toEqual([]);
  });

  it("messages written while offline wait and go out after reconnecting, in order", async () => {
    server.socket.drop();
    chat.send("a");
    chat.send("b");
    await settle();
    expect(outgoing().map((o) => o.status)).toEqual(["queued", "queued"]);
    server.socket.connect();
    await settle();
    expect(texts()).toEqual(["one", "two", "a", "b"]);
  });

  it("counts people coming online and going offline at once", async () => {
    server.socket.push("user.status", { userId: "u-new", username: "newcomer", status: "online" });
    await settle();
    expect(chat.getSnapshot().online.map((u) => u.username)).toEqual(["me", "newcomer", "other"]);
    expect(chat.getSnapshot().onlineCount).toBe(3);
    server.socket.push("user.status", { userId: OTHER.id, username: "other", status: "offline" });
    await settle();
    expect(chat.getSnapshot().online.map((u) => u.username)).toEqual(["me", "newcomer"]);
    expect(chat.getSnapshot().onlineCount).toBe(2);
    // The server's count has the last word.
    server.socket.push("channel.presence", { channel: "general", online: 5 });
    await settle();
    expect(chat.getSnapshot().onlineCount).toBe(5);
  });

  it("when its server is drained, says the tab is moving until it is connected again, with nothing missed", async () => {
    server.socket.push("instance.draining", { reconnect: true });
    await settle();
    expect(chat.getSnapshot()).toMatchObject({ moving: true, status: "connected" });
    // The server closes the connection; socket.io-client reconnects to another instance.
    server.socket.drop();
    expect(chat.getSnapshot()).toMatchObject({ moving: true, status: "reconnecting" });
    server.sent = [];
    server.socket.recovered = true;
    server.socket.connect();
    server.socket.push("message.new", server.store("general", "said while moving"));
    await settle();
    expect(chat.getSnapshot()).toMatchObject({ moving: false, status: "connected" });
    expect(server.sent.map((s) => s.event)).toEqual([]);
    expect(texts()).toEqual(["one", "two", "said while moving"]);
  });

  it("stops saying the tab is moving when the connection does not come back in time", async () => {
    server.socket.push("instance.draining", { reconnect: true });
    await settle();
    server.socket.drop();
    server.socket.up = false;
    await settle(14_000);
    expect(chat.getSnapshot().moving).toBe(true);
    await settle(1000);
    expect(chat.getSnapshot().moving).toBe(false);
    expect(chat.getSnapshot().status).not.toBe("connected");
    // A notice that no reconnect follows changes nothing.
    server.socket.up = true;
    server.socket.connect();
    await settle();
    server.socket.push("instance.draining", { reconnect: false });
    await settle();
    expect(chat.getSnapshot()).toMatchObject({ moving: false, status: "connected" });
  });

  it("shows who is typing, not the user's own other tabs, and forgets a silent typist", async () => {
    server.socket.push("user.typing", { userId: OTHER.id, username: "other", channel: "general", isTyping: true });
    server.socket.push("user.typing", { userId: ME.id, username: "me", channel: "general", isTyping: true });
    await settle();
    expect(chat.getSnapshot().typing.map((t) => t.username)).toEqual(["other"]);
    await settle(7000);
    expect(chat.getSnapshot().typing).toEqual([]);
  });

  it("applies live edits in change order, and fetches the changes it missed from its cursor", async () => {
    server.socket.push("message.updated", server.edit("general", 1, "one, edited"));
    await settle();
    expect(texts()).toEqual(["one, edited", "two"]);
    expect(chat.getSnapshot().byChannel.general?.lastChange).toBe(1);
    // Change 2 is lost on the way; change 3 shows the gap.
    server.edit("general", 2, "two, edited");
    server.sent = [];
    server.socket.push("message.updated", server.edit("general", 1, "one, again"));
    await settle();
    expect(server.sent).toEqual([{ event: "messages.sync", payload: { channel: "general", after_seq: 2, after_change: 1, limit: 200 } }]);
    expect(texts()).toEqual(["one, again", "two, edited"]);
    expect(chat.getSnapshot().byChannel.general?.lastChange).toBe(3);
    // A late copy of an older change does not undo the newer state.
    server.socket.push("message.updated", { channel: "general", id: "id-general-1", seq: 1, change: 1, text: "one, edited", edited_at: "x" });
    await settle();
    expect(texts()[0]).toBe("one, again");
  });

  it("a change that overtakes its message is kept until the message arrives", async () => {
    const m = server.store("general", "three");
    const edit = server.edit("general", 3, "three, edited");
    server.socket.push("message.updated", edit);
    await settle();
    server.socket.push("message.new", { ...m, text: "three", change: undefined, edited_at: undefined });
    await settle();
    expect(texts()).toEqual(["one", "two", "three, edited"]);
  });

  it("after a reconnect, catches up on changes from its cursor", async () => {
    server.socket.drop();
    server.edit("general", 2, "changed while away");
    server.sent = [];
    server.socket.connect();
    await settle();
    const sync = server.sent.find((s) => s.event === "messages.sync")!;
    expect(sync.payload).toMatchObject({ after_seq: 2, after_change: 0 });
    expect(texts()).toEqual(["one", "changed while away"]);
  });

  it("reactions keep the reader's own mark, and a delete leaves a tombstone", async () => {
    server.socket.push("message.reactions", {
      channel: "general", id: "id-general-2", seq: 2, change: 1, reactions: [{ emoji: "👍", count: 1 }], user_id: ME.id, emoji: "👍", added: true,
    });
    server.socket.push("message.reactions", {
      channel: "general", id: "id-general-2", seq: 2, change: 2, reactions: [{ emoji: "👍", count: 2 }], user_id: OTHER.id, emoji: "👍", added: true,
    });
    await settle();
    const two = () => chat.getSnapshot().byChannel.general!.messages[1]!;
    expect(two().reactions).toEqual([{ emoji: "👍", count: 2, me: true }]);
    server.socket.push("message.deleted", { channel: "general", id: "id-general-2", seq: 2, change: 3 });
    await settle();
    expect(two()).toMatchObject({ seq: 2, deleted: true, text: "" });
    expect(two().reactions).toBeUndefined();
  });

  it("marks the open channel read after a pause, and a read in another tab clears a badge", async () => {
    server.socket.push("message.new", server.store("general", "three"));
    await settle();
    server.sent = [];
    await settle(500);
    expect(server.sent.filter((s) => s.event === "channel.read").map((s) => s.payload)).toEqual([{ channel: "general", seq: 3 }]);
  });

  it("counts a mention in another channel at once", async () => {
    chat.selectChannel("other-room");
    await settle();
    // The list the server gave: general, read up to 2.
    server.socket.push("channel.read", { channel: "general", read_seq: 2 });
    await settle();
    server.socket.push("mention", { channel: "general", message: server.store("general", "hey @me") });
    await settle();
    expect(chat.getSnapshot().channels.find((c) => c.name === "general")).toMatchObject({ unread: 1, unread_mentions: 1 });
    server.socket.push("channel.read", { channel: "general", read_seq: 3 });
    await settle();
    expect(chat.getSnapshot().channels.find((c) => c.name === "general")).toMatchObject({ read_seq: 3, unread: 0, unread_mentions: 0 });
  });
});
